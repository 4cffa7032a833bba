// In-warp Walsh-Hadamard transforms and reductions for the HIGGS kernels, in the operation
// order of the CPU reference (hadamard.h) so both sides round identically.
#pragma once
#include <cuda_runtime.h>

namespace kvo::quant::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum_xor(float v) {
  for (int off = 16; off >= 1; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}

// Unnormalized transform of h = 32*E values spread over a warp (lane holds elements
// lane*E .. lane*E+E): strides < E are in-lane butterflies, strides >= E lane-xor shuffles,
// in ascending stride order as on the CPU.
template <int E>
__device__ __forceinline__ void warp_hadamard(float (&v)[E], int lane) {
#pragma unroll
  for (int st = 1; st < E; st <<= 1)
#pragma unroll
    for (int k = 0; k < E; ++k)
      if (!(k & st)) {
        const float a = v[k], b = v[k + st];
        v[k] = a + b;
        v[k + st] = a - b;
      }
#pragma unroll
  for (int m = 1; m < 32; m <<= 1)
#pragma unroll
    for (int k = 0; k < E; ++k) {
      const float o = __shfl_xor_sync(kFullMask, v[k], m);
      v[k] = (lane & m) ? o - v[k] : v[k] + o;
    }
}

// In-place transform of y[0..h) in shared memory by one warp (h >= 64, a power of two).
__device__ __forceinline__ void warp_hadamard_smem(float* y, int h, int lane) {
  for (int st = 1; st < h; st <<= 1) {
    for (int b = lane; b < h / 2; b += 32) {
      const int j = ((b & ~(st - 1)) << 1) | (b & (st - 1));  // (b / st) * 2st + b % st
      const float a = y[j], c = y[j + st];
      y[j] = a + c;
      y[j + st] = a - c;
    }
    __syncwarp();
  }
}

}  // namespace kvo::quant::cuda
