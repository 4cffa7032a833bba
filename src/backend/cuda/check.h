// Error checking for the CUDA backend: every runtime / cuBLAS call and every kernel launch turns
// a failure into kvo::Error "CUDA error in <call>: <message>" (the thrower lives in a .cpp so
// that .cu files need no fmt).
#pragma once
#include <cuda_runtime.h>

namespace kvo::cuda {

[[noreturn]] void throw_cuda(const char* call, const char* message);

}  // namespace kvo::cuda

#define KVO_CUDA(expr)                                                                         \
  do {                                                                                         \
    const cudaError_t kvo_err_ = (expr);                                                       \
    if (kvo_err_ != cudaSuccess) ::kvo::cuda::throw_cuda(#expr, cudaGetErrorString(kvo_err_)); \
  } while (0)

// After a kernel launch (`name` a string literal): launch-configuration errors surface here,
// faults inside the kernel at the next synchronizing call.
#define KVO_CUDA_LAUNCHED(name)                                                 \
  do {                                                                          \
    const cudaError_t kvo_err_ = cudaGetLastError();                            \
    if (kvo_err_ != cudaSuccess)                                                \
      ::kvo::cuda::throw_cuda("launch of " name, cudaGetErrorString(kvo_err_)); \
  } while (0)
