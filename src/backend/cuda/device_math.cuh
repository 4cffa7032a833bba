// Small device helpers shared by the backend's kernel files.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace kvo::cuda {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float silu(float g) {
  return g / (1.0f + expf(-g));
}

inline bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

}  // namespace kvo::cuda
