// Error checking and launch sizing shared by the quantization kernels.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <type_traits>

#include "quant/device.h"

#define KVO_CUDA_CHECK(expr)                                                                  \
  do {                                                                                        \
    const cudaError_t err_ = (expr);                                                          \
    if (err_ != cudaSuccess) ::kvo::quant::throw_cuda_error(#expr, cudaGetErrorString(err_)); \
  } while (0)

namespace kvo::quant::cuda {

inline int sm_count() {
  int dev = 0, sms = 0;
  KVO_CUDA_CHECK(cudaGetDevice(&dev));
  KVO_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return sms;
}

// Persistent-style launch size: as many blocks as fit at once, capped by the work.
template <typename Kernel>
int resident_blocks(Kernel k, int threads, size_t smem, size_t work_blocks) {
  if (smem > 48 * 1024)
    KVO_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  int per_sm = 0;
  KVO_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, threads, smem));
  if (per_sm == 0) throw_cuda_error("launch", "kernel does not fit in shared memory");
  return int(std::max<size_t>(1, std::min<size_t>(work_blocks, size_t(per_sm) * sm_count())));
}

// The HIGGS kernels are compiled for these tuple sizes d (the shipped EDEN grids).
inline bool higgs_tuple_supported(int p) {
  return p == 2 || p == 4 || p == 6 || p == 8 || p == 16;
}

// Calls f(std::integral_constant<int, p>{}) for a supported tuple size.
template <typename F>
void with_tuple_size(int p, F&& f) {
  switch (p) {
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 6:
      return f(std::integral_constant<int, 6>{});
    case 8:
      return f(std::integral_constant<int, 8>{});
    case 16:
      return f(std::integral_constant<int, 16>{});
    default:
      throw_cuda_error("higgs", "no CUDA kernel for tuple size d=" + std::to_string(p) +
                                    " (supported: 2, 4, 6, 8, 16)");
  }
}

// Grid-stride loops with one warp per task: `for (size_t i = grid_warp(); i < n; i +=
// grid_warps())`.
__device__ __forceinline__ size_t grid_warp() {
  return (size_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
}
__device__ __forceinline__ size_t grid_warps() {
  return size_t(gridDim.x) * blockDim.x / 32;
}

// Records may sit at any byte offset (a residual layout after an fp8 meta record), so scalars
// are read a byte at a time, and written by store_bytes in the widest stores the address allows.
__device__ __forceinline__ float load_f32(const uint8_t* p) {
  return __uint_as_float(uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) |
                         (uint32_t(p[3]) << 24));
}
// p[0..n) = the low n bytes of word, little-endian (n <= 8).
__device__ __forceinline__ void store_bytes(uint8_t* p, uint64_t word, int n) {
  while (n > 0) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    int w = 1;
    if (n >= 8 && a % 8 == 0) {
      *reinterpret_cast<uint64_t*>(p) = word;
      w = 8;
    } else if (n >= 4 && a % 4 == 0) {
      *reinterpret_cast<uint32_t*>(p) = uint32_t(word);
      w = 4;
    } else if (n >= 2 && a % 2 == 0) {
      *reinterpret_cast<uint16_t*>(p) = uint16_t(word);
      w = 2;
    } else {
      *p = uint8_t(word);
    }
    p += w;
    n -= w;
    word = w == 8 ? 0 : word >> (8 * w);
  }
}
__device__ __forceinline__ void store_f32(uint8_t* p, float v) {
  store_bytes(p, __float_as_uint(v), 4);
}

}  // namespace kvo::quant::cuda
