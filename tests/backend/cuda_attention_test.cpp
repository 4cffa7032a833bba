// CUDA flash attention against the CPU reference (fp32 flash attention, itself checked against a
// naive attention in cpu_attention_test.cpp) on bf16-rounded random inputs: decode against 1..64K
// keys (split-K path; a second call on the same backend must give the same bits), decode of a
// few queries, prefill chunks at q_start offsets, GQA ratios 1/3/4/7/8, head_dim 32/64/128.
// Tolerance: ||cuda - cpu|| / ||cpu|| <= 1e-2 (bf16 P and bf16 output roundings give ~3e-3; a
// wrong mask, scale or GQA mapping gives O(1)). CudaAttentionKernel.* calls the kernel's API
// directly for its two ways of merging key splits. Skipped where no GPU is present.
//
// CudaAttentionBench.* (set KVO_CUDA_BENCH=1) times the prefill kernel on Llama-3.1-8B heads.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#ifdef KVO_HAVE_CUDA
#include <cuda_runtime.h>

#include "backend/cuda/attention.h"
#include "kv/cuda/buffers.h"
#endif

namespace kvo {
namespace {

std::unique_ptr<Backend> cuda_or_null() {
  auto b = make_backend("auto", 0);
  return b->name() == "cuda" ? std::move(b) : nullptr;
}

// Fast deterministic N(0,1)-ish values (sum of uniforms), rounded to bf16.
std::vector<float> random_bf16(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : v) {
    float acc = 0;
    for (int i = 0; i < 4; ++i) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      acc += float(s >> 40) / float(1 << 24);
    }
    x = bf16_to_f32(f32_to_bf16((acc - 2.0f) * 1.7320508f));
  }
  return v;
}

struct Case {
  int heads, kv_heads, head_dim;
  int64_t q_len, q_start;
};

class CudaAttention : public ::testing::TestWithParam<Case> {};

TEST_P(CudaAttention, MatchesCpu) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU";
  const Case c = GetParam();
  const int64_t kv_len = c.q_start + c.q_len;
  const AttentionShape s{c.heads,
                         c.kv_heads,
                         c.head_dim,
                         c.q_len,
                         c.q_start,
                         kv_len,
                         1.0f / std::sqrt(float(c.head_dim))};
  const int64_t qw = int64_t{c.heads} * c.head_dim, kw = int64_t{c.kv_heads} * c.head_dim;
  auto q = random_bf16(c.q_len * qw, 1), k = random_bf16(kv_len * kw, 2),
       v = random_bf16(kv_len * kw, 3);
  // Peakier scores than N(0,1) dot products / sqrt(D): scale q so softmax is not flat.
  for (float& x : q) x = bf16_to_f32(f32_to_bf16(x * 2.0f));
  std::vector<float> ref(q.size());
  cpu_attention({q.data(), DType::F32, c.q_len, qw, qw}, {k.data(), DType::F32, kv_len, kw, kw},
                {v.data(), DType::F32, kv_len, kw, kw}, s,
                {ref.data(), DType::F32, c.q_len, qw, qw});

  // K/V live in a larger cache (capacity > kv_len) like the dense policy's, rows poisoned.
  auto qd = cuda->upload(HostTensor::owned_f32({c.q_len, qw}, q));
  std::vector<float> kpad(k), vpad(v);
  kpad.resize((kv_len + 70) * kw, NAN);
  vpad.resize((kv_len + 70) * kw, NAN);
  auto kd = cuda->upload(HostTensor::owned_f32({kv_len + 70, kw}, kpad));
  auto vd = cuda->upload(HostTensor::owned_f32({kv_len + 70, kw}, vpad));
  auto out = cuda->upload(HostTensor::owned_f32({c.q_len, qw}, std::vector<float>(q.size(), NAN)));
  auto attend = [&](const DeviceArray& into) {
    cuda->attention(qd.tensor(), kd.tensor().row_range(0, kv_len), vd.tensor().row_range(0, kv_len),
                    s, into.tensor());
    return cuda->download(into.tensor());
  };
  auto got = attend(out);
  // Again on the same backend: the decode kernel's split counters must be left as they were.
  auto again =
      cuda->upload(HostTensor::owned_f32({c.q_len, qw}, std::vector<float>(q.size(), NAN)));
  EXPECT_EQ(attend(again), got);
  double num = 0, den = 0, max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << "at " << i;
    num += double(got[i] - ref[i]) * (got[i] - ref[i]);
    den += double(ref[i]) * ref[i];
    max_diff = std::max(max_diff, double(std::fabs(got[i] - ref[i])));
  }
  const double rel = std::sqrt(num / den);
  std::printf("  H=%d KV=%d D=%d q_len=%lld kv_len=%lld: rel_l2 %.2e max_abs_diff %.2e\n", c.heads,
              c.kv_heads, c.head_dim, static_cast<long long>(c.q_len),
              static_cast<long long>(kv_len), rel, max_diff);
  EXPECT_LE(rel, 1e-2);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttention,
    ::testing::Values(Case{4, 4, 64, 1, 0},         // 1/1
                      Case{32, 8, 128, 1, 4095},    // decode 1/4096, GQA 4, split-K
                      Case{32, 8, 128, 1, 32767},   // decode 1/32768
                      Case{32, 32, 128, 1, 8191},   // decode, MHA
                      Case{28, 4, 128, 1, 20000},   // decode, GQA 7 (Qwen2-7B heads)
                      Case{8, 8, 128, 128, 0},      // prefill 128/128, GQA 1
                      Case{16, 2, 64, 300, 0},      // prefill 300/300, GQA 8, head_dim 64
                      Case{8, 2, 128, 300, 217},    // chunk at an offset
                      Case{9, 3, 64, 300, 1000},    // SmolLM2 heads, GQA 3, chunk + split
                      Case{8, 2, 32, 77, 33},       // head_dim 32 (tiny fixtures)
                      Case{8, 2, 32, 1, 700},       // decode, head_dim 32, split-K
                      Case{32, 8, 128, 333, 1500},  // Llama heads, chunk at an unaligned offset
                      Case{4, 4, 64, 16, 8000},     // short chunk after a long context
                      Case{32, 8, 128, 1, 65535},   // decode 1/65536
                      Case{32, 8, 128, 3, 5000},    // 3 queries of GQA 4 (12 rows), split-K
                      Case{28, 4, 128, 2, 999},     // 2 queries of GQA 7 (14 rows)
                      Case{8, 1, 128, 2048, 0}));   // prefill 2048/2048, GQA 8

#ifdef KVO_HAVE_CUDA
// The decode kernel's two ways of merging key splits: the last split to finish (with counters,
// what the backends pass) and the combine launch (without), at forced split counts up to the
// cap, on one query of Llama-3.1-8B heads whose last splits are empty (positions from device
// memory, as in a recorded step, below the capacity the plan was made for).
TEST(CudaAttentionKernel, LastSplitMergeEqualsCombineLaunch) {
  auto gpu = cuda_or_null();
  if (!gpu) GTEST_SKIP() << "no CUDA GPU";
  const int H = 32, KV = 8, D = 128;
  const int64_t capacity = 9000, position = 4999, qw = int64_t{H} * D, kw = int64_t{KV} * D;
  auto q = gpu->upload(HostTensor::owned_f32({1, qw}, random_bf16(qw, 4)));
  auto k = gpu->upload(HostTensor::owned_f32({capacity, kw}, random_bf16(capacity * kw, 5)));
  auto v = gpu->upload(HostTensor::owned_f32({capacity, kw}, random_bf16(capacity * kw, 6)));
  DeviceArray q_start = gpu->alloc_ints(1);
  gpu->write_ints(q_start.tensor(), std::vector<int32_t>{int32_t(position)});
  gpu->synchronize();
  int sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  cuda::AttentionArgs a;
  a.q = static_cast<const __nv_bfloat16*>(q.tensor().data);
  a.q_stride = qw;
  a.k = static_cast<const __nv_bfloat16*>(k.tensor().data);
  a.v = static_cast<const __nv_bfloat16*>(v.tensor().data);
  a.k_stride = a.v_stride = kw;
  a.num_heads = H;
  a.num_kv_heads = KV;
  a.head_dim = D;
  a.q_len = 1;
  a.kv_len = capacity;
  a.scale = 1.0f / std::sqrt(float(D));
  a.q_start_at = static_cast<const int32_t*>(q_start.tensor().data);
  cuda::DeviceBuffer<uint32_t> counters(KV);
  ASSERT_EQ(cudaMemset(counters.get(), 0, counters.nbytes()), cudaSuccess);
  for (int splits : {3, 16, 128, 500}) {
    SCOPED_TRACE(::testing::Message() << splits << " splits");
    cuda::DeviceBuffer<uint8_t> ws(size_t(cuda::attention_workspace_bytes(a, sms, splits)));
    std::vector<float> outs[2];
    for (int counted = 0; counted < 2; ++counted) {
      auto out = gpu->upload(HostTensor::owned_f32({1, qw}, std::vector<float>(qw, NAN)));
      gpu->synchronize();
      cuda::AttentionArgs b = a;
      b.out = static_cast<__nv_bfloat16*>(out.tensor().data);
      b.out_stride = qw;
      if (counted) {
        b.split_counters = counters.get();
        b.split_counter_slots = KV;
      }
      cuda::attention(b, ws.get(), sms, nullptr, splits);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      outs[counted] = gpu->download(out.tensor());
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < qw; ++i) {
      ASSERT_TRUE(std::isfinite(outs[1][i])) << "at " << i;
      num += double(outs[1][i] - outs[0][i]) * (outs[1][i] - outs[0][i]);
      den += double(outs[0][i]) * outs[0][i];
    }
    EXPECT_LE(std::sqrt(num / den), 1e-2);  // bf16 roundings of the same sums apart
  }
  std::vector<uint32_t> left(KV, 1);
  ASSERT_EQ(cudaMemcpy(left.data(), counters.get(), counters.nbytes(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(left, std::vector<uint32_t>(KV, 0));
}
#endif

TEST(CudaAttentionBench, PrefillLlama31_8BHeads) {
  if (!std::getenv("KVO_CUDA_BENCH")) GTEST_SKIP() << "set KVO_CUDA_BENCH=1 to run";
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU";
  const int H = 32, KV = 8, D = 128;
  for (int64_t n : {int64_t{8192}, int64_t{32768}, int64_t{131072}}) {
    const AttentionShape s{H, KV, D, n, 0, n, 1.0f / std::sqrt(float(D))};
    auto q = cuda->upload(HostTensor::owned_f32({n, H * D}, random_bf16(n * H * D, 5)));
    auto k = cuda->upload(HostTensor::owned_f32({n, KV * D}, random_bf16(n * KV * D, 6)));
    auto v = cuda->upload(HostTensor::owned_f32({n, KV * D}, random_bf16(n * KV * D, 7)));
    auto out = cuda->alloc(n, H * D);
    cuda->attention(q.tensor(), k.tensor(), v.tensor(), s, out.tensor());  // warm-up
    cuda->synchronize();
    const int reps = n >= 131072 ? 3 : 10;
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      cuda->attention(q.tensor(), k.tensor(), v.tensor(), s, out.tensor());
      cuda->synchronize();
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    const double flops = 4.0 * double(n) * double(n) / 2.0 * H * D;  // causal: half of QK^T + PV
    std::printf("BENCH kvoffload_flash seq=%lld H=%d KV=%d D=%d median_ms=%.3f tflops=%.1f\n",
                static_cast<long long>(n), H, KV, D, med, flops / med / 1e9);
    std::fflush(stdout);
  }
}

}  // namespace
}  // namespace kvo
