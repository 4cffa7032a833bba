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

// The rotation of pair i at position pos: (sin, cos) of pos * inv_freq[i].
__device__ __forceinline__ float2 rope_angle(int i, int64_t pos, const float* inv_freq) {
  float s, c;
  sincosf(float(pos) * inv_freq[i], &s, &c);
  return make_float2(s, c);
}

// Pair i of the head at src rotated by `angle` (rope_angle) into dst (dst may be src). The
// products and sums are rounded one by one (no FMA contraction), so every kernel rotating with
// the same angle writes the same bits.
__device__ __forceinline__ void rope_pair(const __nv_bfloat16* src, __nv_bfloat16* dst, int i,
                                          int head_dim, float2 angle, bool adjacent) {
  int ea, eb;
  rope_pair_elements(i, head_dim, adjacent, ea, eb);
  const float x0 = __bfloat162float(src[ea]), x1 = __bfloat162float(src[eb]);
  dst[ea] = __float2bfloat16_rn(__fsub_rn(__fmul_rn(x0, angle.y), __fmul_rn(x1, angle.x)));
  dst[eb] = __float2bfloat16_rn(__fadd_rn(__fmul_rn(x1, angle.y), __fmul_rn(x0, angle.x)));
}

}  // namespace kvo::cuda
