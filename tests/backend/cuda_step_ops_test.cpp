// The decode-step ops that read ids and positions from device memory (embedding_at, rope_at,
// copy_rows_at, rope_store_at, attention_at) against their host-argument forms on the same GPU:
// identical for the gathers, copies and RoPE; for attention_at, whose key split is planned for the
// length bound rather than the actual length, within fp32-summation noise, at positions that leave
// most splits empty, split a few keys each, or fill the bound. Skipped where no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

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

// matmul_many (q, k, v in one launch for decode rows, per-weight GEMMs beyond), without and with
// the input norm, and matmul_add (the residual add in the matvec's epilogue) against the CPU.
TEST(CudaStepOps, FusedProjectionsMatchCpu) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  auto cpu = make_cpu_backend(0);
  for (int64_t rows : {int64_t{1}, int64_t{6}, int64_t{8}, int64_t{20}}) {
    for (bool with_norm : {false, true}) {
      const int64_t in = 512;
      std::vector<std::vector<float>> results[2];
      int side = 0;
      for (Backend* b : {cpu.get(), cuda.get()}) {
        // Same bf16 values on both sides: CUDA uploads round, download gives them back.
        auto same_values = [&](int64_t r, int64_t cols, uint64_t seed) {
          return b->upload(HostTensor::owned_f32(
              {r, cols}, cuda->download(random_device(*cuda, r, cols, seed).tensor())));
        };
        DeviceArray x = same_values(rows, in, 10), norm_w = same_values(1, in, 15);
        std::vector<DeviceArray> w, bias, out;
        const int64_t features[3] = {256, 64, 72};
        for (int i = 0; i < 3; ++i) {
          w.push_back(same_values(features[i], in, 11 + i));
          bias.push_back(same_values(1, features[i], 20 + i));
          out.push_back(b->alloc(rows, features[i]));
        }
        const Tensor bias1 = bias[1].tensor();
        const Tensor ws[3] = {w[0].tensor(), w[1].tensor(), w[2].tensor()};
        const Tensor* biases[3] = {nullptr, &bias1, nullptr};
        const Tensor outs[3] = {out[0].tensor(), out[1].tensor(), out[2].tensor()};
        const InputNorm norm{norm_w.tensor(), 1e-5f};
        b->matmul_many(x.tensor(), with_norm ? &norm : nullptr, ws, biases, outs);
        for (const DeviceArray& o : out) results[side].push_back(b->download(o.tensor()));
        // out[1] += x * w[1]^T + bias: 256 inputs projected onto 64 residual features.
        DeviceArray residual = same_values(rows, 64, 30), small_x = same_values(rows, 256, 31);
        DeviceArray w_small = same_values(64, 256, 32);
        b->matmul_add(small_x.tensor(), w_small.tensor(), with_norm ? &bias1 : nullptr,
                      residual.tensor());
        results[side].push_back(b->download(residual.tensor()));
        ++side;
      }
      for (int i = 0; i < 4; ++i)
        EXPECT_LE(rel_l2(results[1][i], results[0][i]), 1e-2)
            << rows << " rows, output " << i << (with_norm ? ", normed input / bias" : "");
    }
  }
}

// matmul_swiglu with SwiGLU in the matvec's epilogue (1-8 rows) and the GEMM then swiglu beyond,
// without and with the input norm, against the CPU backend and the unfused ops on the GPU.
TEST(CudaStepOps, MatmulSwigluMatchesCpuAndTheUnfusedOps) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  auto cpu = make_cpu_backend(0);
  const int64_t in = 512, features = 200;
  for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{8}, int64_t{20}}) {
    std::vector<float> results[3][2];  // (fused on the GPU, unfused on the GPU, cpu) x norm
    for (int run = 0; run < 3; ++run) {
      Backend& b = run < 2 ? *cuda : *cpu;
      auto same_values = [&](int64_t r, int64_t cols, uint64_t seed) {
        return b.upload(HostTensor::owned_f32(
            {r, cols}, cuda->download(random_device(*cuda, r, cols, seed).tensor())));
      };
      DeviceArray x = same_values(rows, in, 50), w = same_values(2 * features, in, 51),
                  norm_w = same_values(1, in, 52);
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
      EXPECT_LE(rel_l2(results[0][n], results[2][n]), 1e-2) << rows << " rows, norm " << n;
      EXPECT_LE(rel_l2(results[0][n], results[1][n]), 1e-2) << rows << " rows, norm " << n;
    }
  }
}

// rope_store_at (RoPE of q and k plus the KV append in one kernel) against its default, rope_at
// and copy_rows_at on the same GPU (bit-identical: the same rotation), and against the CPU.
TEST(CudaStepOps, RopeStoreAtMatchesRopeThenRowCopiesAndCpu) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  auto cpu = make_cpu_backend(0);
  const int d = 64, heads = 8, kv_heads = 2;
  const int64_t capacity = 50;
  const std::vector<int32_t> positions = {7, 49};
  RopeParams rope;
  for (int i = 0; i < d / 2; ++i) rope.inv_freq.push_back(std::pow(10000.0f, -float(i) / (d / 2)));
  for (bool adjacent : {false, true}) {
    rope.adjacent_pairs = adjacent;
    std::vector<float> results[3][3];  // (fused, default on the GPU, cpu) x (q, keys, values)
    for (int run = 0; run < 3; ++run) {
      Backend& b = run < 2 ? *cuda : *cpu;
      auto same_values = [&](int64_t rows, int64_t cols, uint64_t seed) {
        return b.upload(HostTensor::owned_f32(
            {rows, cols}, cuda->download(random_device(*cuda, rows, cols, seed).tensor())));
      };
      DeviceArray q = same_values(2, heads * d, 40), k = same_values(2, kv_heads * d, 41),
                  v = same_values(2, kv_heads * d, 42),
                  keys = same_values(capacity, kv_heads * d, 43),
                  values = same_values(capacity, kv_heads * d, 44);
      DeviceArray at = ints(b, positions);
      if (run == 1)
        b.Backend::rope_store_at(q.tensor(), k.tensor(), v.tensor(), at.tensor(), d, rope,
                                 keys.tensor(), values.tensor());
      else
        b.rope_store_at(q.tensor(), k.tensor(), v.tensor(), at.tensor(), d, rope, keys.tensor(),
                        values.tensor());
      results[run][0] = b.download(q.tensor());
      results[run][1] = b.download(keys.tensor());
      results[run][2] = b.download(values.tensor());
    }
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(results[0][i], results[1][i]) << "tensor " << i << ", adjacent " << adjacent;
      EXPECT_LE(rel_l2(results[0][i], results[2][i]), 1e-2) << "tensor " << i;
    }
    // Rows other than the two positions kept their contents.
    const std::vector<float> before =
        cuda->download(random_device(*cuda, capacity, kv_heads * d, 43).tensor());
    EXPECT_EQ(std::vector<float>(results[0][1].begin(), results[0][1].begin() + 7 * kv_heads * d),
              std::vector<float>(before.begin(), before.begin() + 7 * kv_heads * d));
    EXPECT_NE(results[0][1], before);
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
