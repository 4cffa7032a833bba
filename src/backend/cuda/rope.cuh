// RoPE of one element pair of a head, shared by the RoPE kernels (kernels.cu) and the decode
// attention that rotates its query and appends its key itself (attention.cu).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace kvo::cuda {

// The elements of pair i of a head_dim-wide head: (2i, 2i + 1) when adjacent, else
// (i, i + head_dim / 2) (model/rope.h).
__device__ __forceinline__ void rope_pair_elements(int i, int head_dim, bool adjacent, int& ea,
                                                   int& eb) {
  ea = adjacent ? 2 * i : i;
  eb = adjacent ? 2 * i + 1 : i + head_dim / 2;
}

// Pair i of the head at src rotated by position pos into dst (dst may be src).
__device__ __forceinline__ void rope_pair(const __nv_bfloat16* src, __nv_bfloat16* dst, int i,
                                          int head_dim, int64_t pos, const float* inv_freq,
                                          bool adjacent) {
  float s, c;
  sincosf(float(pos) * inv_freq[i], &s, &c);
  int ea, eb;
  rope_pair_elements(i, head_dim, adjacent, ea, eb);
  const float x0 = __bfloat162float(src[ea]), x1 = __bfloat162float(src[eb]);
  dst[ea] = __float2bfloat16_rn(x0 * c - x1 * s);
  dst[eb] = __float2bfloat16_rn(x1 * c + x0 * s);
}

}  // namespace kvo::cuda
