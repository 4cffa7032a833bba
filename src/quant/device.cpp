#include "quant/device.h"

#include "util/error.h"

#ifdef KVO_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvo::quant {

bool cuda_device_available(std::string* why) {
#ifdef KVO_HAVE_CUDA
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    if (why)
      *why = err != cudaSuccess ? std::string("no CUDA device: ") + cudaGetErrorString(err)
                                : "no CUDA device visible";
    return false;
  }
  return true;
#else
  if (why) *why = "this build has no CUDA support (configure with -DKVOFFLOAD_CUDA=ON and nvcc)";
  return false;
#endif
}

void throw_cuda_error(const std::string& what, const std::string& message) {
  fail("CUDA error in {}: {}", what, message);
}

void throw_error(const std::string& message) {
  throw Error(message);
}

}  // namespace kvo::quant
