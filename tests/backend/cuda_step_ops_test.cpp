// The decode-step ops on the GPU. Those that read ids and positions from device memory
// (embedding_at, rope_at, copy_rows_at, rope_store_at, attention_at) against their host-argument
// forms: identical for the gathers, copies and RoPE; for attention_at, whose key split is planned
// for the length bound rather than the actual length, within fp32-summation noise, at positions
// that leave most splits empty, split a few keys each, or fill the bound. The fused ones
// (matmul_many, matmul_add, matmul_swiglu, rope_store_at) against the CPU backend and their
// defaults at every decode row count and at shapes that leave partial blocks and tails. The
// batched decode op (rope_store_attention_batch_at) against one sequence at a time
// and the CPU. Skipped where no GPU is present.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"

namespace kvo {
namespace {

std::unique_ptr<Backend> cuda_or_null() {
  auto b = make_backend("auto", 0);
  return b->name() == "cuda" ? std::move(b) : nullptr;
}

DeviceArray random_device(Backend& b, int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(rows * cols);
  for (float& x : v) x = dist(rng);
  return b.upload(HostTensor::owned_f32({rows, cols}, v));
}

DeviceArray ints(Backend& b, std::vector<int32_t> values) {
  DeviceArray a = b.alloc_ints(int64_t(values.size()));
  b.write_ints(a.tensor(), values);
  return a;
}

TEST(CudaStepOps, GatherRopeAndRowCopyMatchTheirHostForms) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  Backend& b = *cuda;
  DeviceArray table = random_device(b, 300, 64, 1);
  const std::vector<int32_t> ids = {5, 299, 0, 5};
  DeviceArray ids_at = ints(b, ids);
  EXPECT_EQ(b.read_ints(ids_at.tensor()), ids);
  DeviceArray want = b.alloc(4, 64), got = b.alloc(4, 64);
  b.embedding(ids, table.tensor(), want.tensor());
  b.embedding_at(ids_at.tensor(), table.tensor(), got.tensor());
  EXPECT_EQ(b.download(got.tensor()), b.download(want.tensor()));

  RopeParams rope;
  for (int i = 0; i < 32; ++i) rope.inv_freq.push_back(std::pow(10000.0f, -float(i) / 32.0f));
  const std::vector<int32_t> positions = {0, 17, 4095, 131071};
  DeviceArray positions_at = ints(b, positions);
  DeviceArray x1 = random_device(b, 4, 4 * 64, 2), x2 = random_device(b, 4, 4 * 64, 2);
  b.rope(x1.tensor(), positions, 64, rope);
  b.rope_at(x2.tensor(), positions_at.tensor(), 64, rope);
  EXPECT_EQ(b.download(x2.tensor()), b.download(x1.tensor()));

  DeviceArray dst1 = random_device(b, 50, 64, 3), dst2 = random_device(b, 50, 64, 3);
  DeviceArray first = ints(b, {31});
  b.copy(table.tensor().row_range(0, 3), dst1.tensor().row_range(31, 3));
  b.copy_rows_at(table.tensor().row_range(0, 3), dst2.tensor(), first.tensor());
  EXPECT_EQ(b.download(dst2.tensor()), b.download(dst1.tensor()));
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += double(got[i] - ref[i]) * (got[i] - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Normal values times scale * (1 + growth * row), rounded to bf16 (a CUDA upload rounds, the
// download gives them back) and put on `b`: both backends then compute from the same inputs.
DeviceArray bf16_values(Backend& cuda, Backend& b, int64_t rows, int64_t cols, uint64_t seed,
                        float scale = 1.0f, float growth = 0.0f) {
  std::vector<float> v = cuda.download(random_device(cuda, rows, cols, seed).tensor());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) v[r * cols + c] *= scale * (1.0f + growth * float(r));
  return b.upload(HostTensor::owned_f32(
      {rows, cols}, cuda.download(cuda.upload(HostTensor::owned_f32({rows, cols}, v)).tensor())));
}

// Both row counts of the matvec kernel (1 and 2, one instantiation each) and the GEMMs beyond.
const std::vector<int64_t> kDecodeRows = {1, 2, 3, 4, 5, 6, 7, 8, 9, 20};
// 1160 inputs: the matvec's 4-chunk loop, then a tail that only some lanes take; 36: rows that are
// not 16-byte multiples, so the GEMM path (and the norm in its own kernel) at every row count;
// 2048: whole batches of chunks, the one-row kernel's path without bounds (k a multiple of 1024).
const std::vector<int64_t> kInputWidths = {1160, 36, 2048};

// matmul_many (q, k, v in one launch for decode rows, per-weight GEMMs beyond), without and with
// the input norm, and matmul_add (the residual add in the matvec's epilogue, cuBLAS with beta 1
// beyond) against the CPU. Rows of x differ in scale, so a row normalized by another's 1/rms
// shows; 257 + 61 + 70 features leave the last block of the stacked parts 2 idle warps. One
// row of Llama-3.1-8B's q/k/v (4096 + 1024 + 1024 features) makes 768 blocks, more than one
// wave at 4 per SM on an H200.
TEST(CudaStepOps, FusedProjectionsMatchCpu) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  auto cpu = make_cpu_backend(0);
  struct Parts {
    int64_t features[3];
    std::vector<int64_t> rows;
  };
  for (const Parts& parts : {Parts{{257, 61, 70}, kDecodeRows}, Parts{{4096, 1024, 1024}, {1}}}) {
    for (int64_t in : kInputWidths) {
      for (int64_t rows : parts.rows) {
        for (bool with_norm : {false, true}) {
          std::vector<std::vector<float>> results[2];
          int side = 0;
          for (Backend* b : {cpu.get(), cuda.get()}) {
            DeviceArray x = bf16_values(*cuda, *b, rows, in, 10, 1.0f, 1.0f),
                        norm_w = bf16_values(*cuda, *b, 1, in, 15);
            std::vector<DeviceArray> w, bias, out;
            const int64_t* features = parts.features;
            for (int i = 0; i < 3; ++i) {
              w.push_back(bf16_values(*cuda, *b, features[i], in, 11 + i));
              bias.push_back(bf16_values(*cuda, *b, 1, features[i], 20 + i));
              out.push_back(b->alloc(rows, features[i]));
            }
            const Tensor bias1 = bias[1].tensor();
            const Tensor ws[3] = {w[0].tensor(), w[1].tensor(), w[2].tensor()};
            const Tensor* biases[3] = {nullptr, &bias1, nullptr};
            const Tensor outs[3] = {out[0].tensor(), out[1].tensor(), out[2].tensor()};
            const InputNorm norm{norm_w.tensor(), 1e-5f};
            b->matmul_many(x.tensor(), with_norm ? &norm : nullptr, ws, biases, outs);
            for (const DeviceArray& o : out) results[side].push_back(b->download(o.tensor()));
            // residual += x * w[1]^T (+ bias), the residual as large as the product: a lost or
            // doubled add shows.
            DeviceArray residual =
                bf16_values(*cuda, *b, rows, features[1], 30, std::sqrt(float(in)), 1.0f);
            b->matmul_add(x.tensor(), w[1].tensor(), with_norm ? &bias1 : nullptr,
                          residual.tensor());
            results[side].push_back(b->download(residual.tensor()));
            ++side;
          }
          for (int i = 0; i < 4; ++i)
            EXPECT_LE(rel_l2(results[1][i], results[0][i]), 1e-2)
                << rows << "x" << in << ", "
                << fmt::format("{}+{}+{}", parts.features[0], parts.features[1], parts.features[2])
                << " features, output " << i << (with_norm ? ", normed input / bias" : "");
        }
      }
    }
  }
}

// matmul_swiglu with SwiGLU in the matvec's epilogue (1-2 rows) and the GEMM then swiglu beyond,
// without and with the input norm, against the CPU backend and the unfused ops on the GPU; 203
// features: the last block has 5 idle warps.
TEST(CudaStepOps, MatmulSwigluMatchesCpuAndTheUnfusedOps) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  auto cpu = make_cpu_backend(0);
  const int64_t features = 203;
  for (int64_t in : kInputWidths) {
    for (int64_t rows : kDecodeRows) {
      std::vector<float> results[3][2];  // (fused on the GPU, unfused on the GPU, cpu) x norm
      for (int run = 0; run < 3; ++run) {
        Backend& b = run < 2 ? *cuda : *cpu;
        DeviceArray x = bf16_values(*cuda, b, rows, in, 50, 1.0f, 1.0f),
                    w = bf16_values(*cuda, b, 2 * features, in, 51),
                    norm_w = bf16_values(*cuda, b, 1, in, 52);
        const InputNorm norm{norm_w.tensor(), 1e-5f};
        for (bool with_norm : {false, true}) {
          DeviceArray out = b.alloc(rows, features);
          if (run == 1)
            b.Backend::matmul_swiglu(x.tensor(), with_norm ? &norm : nullptr, w.tensor(),
                                     out.tensor());
          else
            b.matmul_swiglu(x.tensor(), with_norm ? &norm : nullptr, w.tensor(), out.tensor());
          results[run][with_norm] = b.download(out.tensor());
        }
      }
      for (int n = 0; n < 2; ++n) {
        EXPECT_LE(rel_l2(results[0][n], results[2][n]), 1e-2)
            << rows << "x" << in << ", norm " << n;
        EXPECT_LE(rel_l2(results[0][n], results[1][n]), 1e-2)
            << rows << "x" << in << ", norm " << n;
      }
    }
  }
}

// rope_store_at (RoPE of q and k plus the KV append in one kernel) against its default, rope_at
// and copy_rows_at on the same GPU (bit-identical: the same rotation), and against the CPU, for
// head sizes 32/64/128, GQA groups of 4, 1 and 6, one row and several: the rows at the positions
// change, every other row of the cache keeps its contents.
TEST(CudaStepOps, RopeStoreAtMatchesRopeThenRowCopiesAndCpu) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  auto cpu = make_cpu_backend(0);
  const int64_t capacity = 50;
  struct Heads {
    int d, heads, kv_heads;
  };
  for (Heads h : {Heads{64, 8, 2}, Heads{32, 4, 4}, Heads{128, 6, 1}}) {
    const int64_t width = int64_t{h.kv_heads} * h.d;
    RopeParams rope;
    for (int i = 0; i < h.d / 2; ++i)
      rope.inv_freq.push_back(std::pow(10000.0f, -float(i) / float(h.d / 2)));
    for (const std::vector<int32_t>& positions : {std::vector<int32_t>{7, 49, 0}, {23}}) {
      const auto rows = int64_t(positions.size());
      for (bool adjacent : {false, true}) {
        rope.adjacent_pairs = adjacent;
        std::vector<float> results[3][3];  // (fused, default on the GPU, cpu) x (q, keys, values)
        for (int run = 0; run < 3; ++run) {
          Backend& b = run < 2 ? *cuda : *cpu;
          DeviceArray q = bf16_values(*cuda, b, rows, h.heads * h.d, 40),
                      k = bf16_values(*cuda, b, rows, width, 41),
                      v = bf16_values(*cuda, b, rows, width, 42),
                      keys = bf16_values(*cuda, b, capacity, width, 43),
                      values = bf16_values(*cuda, b, capacity, width, 44);
          DeviceArray at = ints(b, positions);
          if (run == 1)
            b.Backend::rope_store_at(q.tensor(), k.tensor(), v.tensor(), at.tensor(), h.d, rope,
                                     keys.tensor(), values.tensor());
          else
            b.rope_store_at(q.tensor(), k.tensor(), v.tensor(), at.tensor(), h.d, rope,
                            keys.tensor(), values.tensor());
          results[run][0] = b.download(q.tensor());
          results[run][1] = b.download(keys.tensor());
          results[run][2] = b.download(values.tensor());
        }
        const std::string what = fmt::format("head_dim {}, {}/{} heads, {} rows, adjacent {}", h.d,
                                             h.heads, h.kv_heads, rows, adjacent);
        for (int i = 0; i < 3; ++i) {
          EXPECT_EQ(results[0][i], results[1][i]) << "tensor " << i << ", " << what;
          EXPECT_LE(rel_l2(results[0][i], results[2][i]), 1e-2) << "tensor " << i << ", " << what;
        }
        const std::vector<float> cache_before[2] = {
            cuda->download(random_device(*cuda, capacity, width, 43).tensor()),
            cuda->download(random_device(*cuda, capacity, width, 44).tensor())};
        const std::vector<float> new_v =
            cuda->download(random_device(*cuda, rows, width, 42).tensor());
        auto row = [&](const std::vector<float>& t, int64_t r) {
          return std::vector<float>(t.begin() + r * width, t.begin() + (r + 1) * width);
        };
        for (int64_t r = 0; r < capacity; ++r) {
          const auto at = std::find(positions.begin(), positions.end(), int32_t(r));
          if (at == positions.end()) {
            EXPECT_EQ(row(results[0][1], r), row(cache_before[0], r))
                << "key row " << r << ", " << what;
            EXPECT_EQ(row(results[0][2], r), row(cache_before[1], r))
                << "value row " << r << ", " << what;
          } else {
            EXPECT_NE(row(results[0][1], r), row(cache_before[0], r))
                << "key row " << r << ", " << what;
            EXPECT_EQ(row(results[0][2], r), row(new_v, at - positions.begin()))
                << "value row " << r << ", " << what;
          }
        }
      }
    }
  }
}

// rope_store_attention_batch_at (one launch per 64 sequences, each with its own tables and
// capacity; the decode kernel rotating q and appending k and v itself) against its default on the
// same GPU (a sequence at a time through rope_store_at and attention_at: the same tables bit for
// bit, the attention within fp32-summation noise of its other key split) and against the CPU:
// 70 sequences of small heads (two launches of 64 and 6), 3 of Llama-3.1-8B's heads at long
// capacities (split-K) and 5 of 20 heads a KV head (not fused), positions at a table's first and
// last rows, both RoPE layouts.
TEST(CudaStepOps, BatchedDecodeOpsMatchOneSequenceAtATimeAndCpu) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  auto cpu = make_cpu_backend(0);
  struct Case {
    int d, heads, kv_heads;
    int64_t batch, capacity0, capacity_step;
  };
  // The third case has more heads a KV head than the decode kernel takes (20): RoPE's own
  // kernel, then the flash kernel.
  for (Case c : {Case{64, 8, 2, 70, 40, 13}, Case{128, 32, 8, 3, 3000, 1100},
                 Case{64, 40, 2, 5, 700, 333}}) {
    const int64_t width = int64_t{c.kv_heads} * c.d, qw = int64_t{c.heads} * c.d;
    RopeParams rope;
    rope.adjacent_pairs = c.d == 64;
    for (int i = 0; i < c.d / 2; ++i)
      rope.inv_freq.push_back(std::pow(10000.0f, -float(i) / float(c.d / 2)));
    std::vector<int64_t> capacity;
    std::vector<int32_t> positions;
    for (int64_t s = 0; s < c.batch; ++s) {
      capacity.push_back(c.capacity0 + c.capacity_step * s);
      positions.push_back(s == 0   ? 0
                          : s == 1 ? int32_t(capacity[s] - 1)
                                   : int32_t((s * 7919) % capacity[s]));
    }
    const AttentionShape shape{
        c.heads, c.kv_heads, c.d, 1, 0, capacity.back(), 1.0f / std::sqrt(float(c.d))};
    // (batched on the GPU, one at a time on the GPU, cpu) x (out, every key table, values)
    std::vector<float> results[3][3];
    for (int run = 0; run < 3; ++run) {
      Backend& b = run < 2 ? *cuda : *cpu;
      DeviceArray q = bf16_values(*cuda, b, c.batch, qw, 50),
                  k = bf16_values(*cuda, b, c.batch, width, 51),
                  v = bf16_values(*cuda, b, c.batch, width, 52), out = b.alloc(c.batch, qw);
      std::vector<DeviceArray> key_tables, value_tables;
      std::vector<Tensor> keys, values;
      for (int64_t s = 0; s < c.batch; ++s) {
        key_tables.push_back(bf16_values(*cuda, b, capacity[s], width, 100 + s));
        value_tables.push_back(bf16_values(*cuda, b, capacity[s], width, 300 + s));
        keys.push_back(key_tables.back().tensor());
        values.push_back(value_tables.back().tensor());
      }
      DeviceArray at = ints(b, positions);
      if (run == 1)
        b.Backend::rope_store_attention_batch_at(q.tensor(), k.tensor(), v.tensor(), at.tensor(),
                                                 c.d, rope, keys, values, shape, out.tensor());
      else
        b.rope_store_attention_batch_at(q.tensor(), k.tensor(), v.tensor(), at.tensor(), c.d, rope,
                                        keys, values, shape, out.tensor());
      results[run][0] = b.download(out.tensor());
      for (int64_t s = 0; s < c.batch; ++s) {
        const std::vector<float> kt = b.download(keys[s]), vt = b.download(values[s]);
        results[run][1].insert(results[run][1].end(), kt.begin(), kt.end());
        results[run][2].insert(results[run][2].end(), vt.begin(), vt.end());
      }
    }
    const std::string what =
        fmt::format("{} sequences of {}/{} heads of {}", c.batch, c.heads, c.kv_heads, c.d);
    for (int i : {1, 2}) EXPECT_EQ(results[0][i], results[1][i]) << "tensor " << i << ", " << what;
    EXPECT_LE(rel_l2(results[0][0], results[1][0]), 1e-3) << what;
    for (int i = 0; i < 3; ++i)
      EXPECT_LE(rel_l2(results[0][i], results[2][i]), 1e-2) << "tensor " << i << ", " << what;
    // Each sequence's output against the CPU on its own: a sequence that read another's table
    // would stand out even when the batch's total error is small.
    for (int64_t s = 0; s < c.batch; ++s) {
      const auto row = [&](const std::vector<float>& t) {
        return std::vector<float>(t.begin() + s * qw, t.begin() + (s + 1) * qw);
      };
      EXPECT_LE(rel_l2(row(results[0][0]), row(results[2][0])), 1e-2)
          << "sequence " << s << ", " << what;
    }
  }
}

TEST(CudaStepOps, AttentionAtDevicePositionMatchesAttentionAtThatLength) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  Backend& b = *cuda;
  auto cpu = make_cpu_backend(0);
  const int heads = 32, kv_heads = 8, d = 128;
  const int64_t bound = 9000;
  DeviceArray k = random_device(b, bound, kv_heads * d, 4),
              v = random_device(b, bound, kv_heads * d, 5);
  DeviceArray q = random_device(b, 1, heads * d, 6);
  const std::vector<float> kh = b.download(k.tensor()), vh = b.download(v.tensor()),
                           qh = b.download(q.tensor());
  for (int64_t position : {int64_t{0}, int64_t{37}, int64_t{700}, int64_t{4500}, bound - 1}) {
    const AttentionShape at{heads, kv_heads, d, 1, 0, bound, 1.0f / std::sqrt(float(d))};
    const AttentionShape direct{heads, kv_heads, d, 1, position, position + 1, at.scale};
    DeviceArray pos = ints(b, {int32_t(position)});
    DeviceArray out_at = b.alloc(1, heads * d), out = b.alloc(1, heads * d);
    b.attention_at(q.tensor(), k.tensor(), v.tensor(), at, pos.tensor(), out_at.tensor());
    b.attention(q.tensor(), k.tensor().row_range(0, position + 1),
                v.tensor().row_range(0, position + 1), direct, out.tensor());
    // The fp32 CPU reference on the same bf16 values.
    DeviceArray cq = cpu->upload(HostTensor::owned_f32({1, heads * d}, qh));
    DeviceArray ck = cpu->upload(HostTensor::owned_f32({bound, kv_heads * d}, kh));
    DeviceArray cv = cpu->upload(HostTensor::owned_f32({bound, kv_heads * d}, vh));
    DeviceArray c_out = cpu->alloc(1, heads * d);
    cpu->attention(cq.tensor(), ck.tensor().row_range(0, position + 1),
                   cv.tensor().row_range(0, position + 1), direct, c_out.tensor());
    const std::vector<float> ref = cpu->download(c_out.tensor()), a = b.download(out_at.tensor()),
                             e = b.download(out.tensor());
    double num = 0, den = 0, num_e = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      num += double(a[i] - ref[i]) * (a[i] - ref[i]);
      num_e += double(e[i] - ref[i]) * (e[i] - ref[i]);
      den += double(ref[i]) * ref[i];
    }
    const double err = std::sqrt(num / den), err_e = std::sqrt(num_e / den);
    std::printf("attention_at position %lld: rel_l2 vs cpu %.2e (attention at that length %.2e)\n",
                (long long)position, err, err_e);
    EXPECT_LE(err, 1e-2) << "position " << position;
  }
}

}  // namespace
}  // namespace kvo
