// An owning device allocation for the host code around the quantization kernels (benchmark,
// CLI, tests). Failures throw kvo::Error "CUDA error in <call>: <message>".
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "quant/device.h"

namespace kvo::quant::cuda {

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    ok(cudaMalloc(reinterpret_cast<void**>(&ptr_), std::max<size_t>(1, count) * sizeof(T)),
       "cudaMalloc");
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    ok(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
       "cudaMemcpy to the device");
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  // Waits for the device, then copies the whole buffer back.
  std::vector<T> download() const {
    std::vector<T> host(count_);
    ok(cudaMemcpy(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost),
       "cudaMemcpy to the host");
    return host;
  }

 private:
  static void ok(cudaError_t err, const char* what) {
    if (err != cudaSuccess) throw_cuda_error(what, cudaGetErrorString(err));
  }
  T* ptr_ = nullptr;
  size_t count_;
};

}  // namespace kvo::quant::cuda
