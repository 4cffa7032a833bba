// Device sampling; the method is described in sampling.h.
#include "backend/cuda/check.h"
#include "backend/cuda/overlap.h"
#include "backend/cuda/sampling.h"

namespace kvo::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 1024;

__device__ __forceinline__ uint64_t sort_key(bf16 logit, int64_t id) {
  uint32_t u = __float_as_uint(__bfloat162float(logit));
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // float order as unsigned order
  return (uint64_t(u) << 32) | (0xffffffffu - uint32_t(id));
}

__device__ __forceinline__ int32_t id_of(uint64_t key) {
  return int32_t(0xffffffffu - uint32_t(key));
}

// Every thread gets the block's total; `red` holds 32 slots.
__device__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // the previous reduction has read `red`
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x % 32 < blockDim.x / 32 ? red[threadIdx.x % 32] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ uint64_t block_max(uint64_t v, unsigned long long* red) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, uint64_t(__shfl_xor_sync(0xffffffffu, v, o)));
  __syncthreads();
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x % 32 < blockDim.x / 32 ? red[threadIdx.x % 32] : 0;
  for (int o = 16; o > 0; o >>= 1) v = max(v, uint64_t(__shfl_xor_sync(0xffffffffu, v, o)));
  return v;
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const bf16* logits, int64_t ls, int64_t vocab, float temperature, int top_k,
                  float top_p, const float* uniforms, float* scratch, int32_t* ids) {
  allow_successor();
  wait_for_predecessor();
  __shared__ float red[32];
  __shared__ unsigned long long red_key[32];
  const int64_t r = blockIdx.x;
  const bf16* row = logits + r * ls;
  // The largest key: 16-byte loads where the row allows (one pass over the row, which the LM
  // head just wrote, is all greedy decoding reads), element by element for the rest.
  uint64_t best = 0;
  int64_t done = 0;
  if (reinterpret_cast<uintptr_t>(row) % 16 == 0) {
    const uint4* chunks = reinterpret_cast<const uint4*>(row);
    done = vocab / 8 * 8;
#pragma unroll 4
    for (int64_t c = threadIdx.x; c < vocab / 8; c += blockDim.x) {
      const uint4 v = chunks[c];
      const bf16* e = reinterpret_cast<const bf16*>(&v);
#pragma unroll
      for (int j = 0; j < 8; ++j) best = max(best, sort_key(e[j], c * 8 + j));
    }
  }
  for (int64_t i = done + threadIdx.x; i < vocab; i += blockDim.x)
    best = max(best, sort_key(row[i], i));
  best = block_max(best, red_key);
  if (temperature == 0.0f) {
    if (threadIdx.x == 0) ids[r] = id_of(best);
    return;
  }
  // Softmax weights relative to the largest logit; each thread reads back only its own entries.
  float* prob = scratch + r * vocab;
  const float top = __bfloat162float(row[id_of(best)]);
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    prob[i] = expf((__bfloat162float(row[i]) - top) / temperature);
  // Count (or mass) of the candidates whose key is >= k.
  auto at_or_above = [&](uint64_t k, bool count) {
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
      if (sort_key(row[i], i) >= k) s += count ? 1.0f : prob[i];
    return block_sum(s, red);
  };
  // The largest key k whose prefix {key >= max(k, floor)} still passes `keep(measure)`: the key
  // of the last candidate of the smallest passing prefix.
  auto last_key = [&](uint64_t floor, bool count, auto keep) {
    uint64_t k = 0;
    for (int bit = 63; bit >= 0; --bit) {
      const uint64_t c = k | (uint64_t{1} << bit);
      if (keep(at_or_above(max(c, floor), count))) k = c;
    }
    return max(k, floor);
  };
  uint64_t floor = 0;
  if (top_k > 0 && top_k < vocab)
    floor = last_key(0, true, [&](float n) { return n >= float(top_k); });
  if (top_p < 1.0f) {
    const float total = at_or_above(floor, false);
    floor = last_key(floor, false, [&](float mass) { return mass >= top_p * total; });
  }
  const float target = uniforms[r] * at_or_above(floor, false);
  const uint64_t pick = last_key(floor, false, [&](float mass) { return mass > target; });
  if (threadIdx.x == 0) ids[r] = id_of(pick);
}

}  // namespace

void sample(const bf16* logits, int64_t ls, int64_t rows, int64_t vocab, float temperature,
            int top_k, float top_p, const float* uniforms, float* scratch, int32_t* ids,
            cudaStream_t stream) {
  if (rows == 0) return;
  launch_overlapped("sample_kernel", sample_kernel, static_cast<unsigned>(rows), kThreads, 0,
                    stream, logits, ls, vocab, temperature, top_k, top_p, uniforms, scratch, ids);
}

}  // namespace kvo::cuda
