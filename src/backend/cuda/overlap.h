// Programmatic dependent launch (sm_90): a kernel launched with `launch_overlapped` is scheduled
// while its predecessor on the stream is still finishing, so its launch latency hides behind the
// predecessor's tail, inside CUDA graphs too. On the 8B decode step (~420 kernels) that saves
// ~1.5% (bench/RESULTS.md, "Decode step vs the roofline").
//
// Contract for every kernel launched this way:
//   - call `allow_successor()` first: the next overlapped kernel may then be scheduled once every
//     block of this grid is running (it never takes the slots of this grid's later waves);
//   - call `wait_for_predecessor()` in every thread before touching global memory (an earlier
//     kernel may still be writing what it reads, or reading what it writes). Every thread waits
//     before it exits, so a grid completes only after its predecessor did: the ordering stays
//     transitive along the stream, also for kernels launched the ordinary way.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "backend/cuda/check.h"

namespace kvo::cuda {

__device__ __forceinline__ void allow_successor() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_predecessor() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...) with programmatic stream serialization;
// `name` (a string literal) names the kernel in errors.
template <typename... Params, typename... Args>
void launch_overlapped(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                       size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (err != cudaSuccess) throw_cuda(name, cudaGetErrorString(err));
}

}  // namespace kvo::cuda
