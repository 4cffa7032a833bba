// Owning buffers of the CUDA KV policies: typed device memory, and pinned host memory mapped
// into the device's address space (the offloaded stores: kernels read them over PCIe).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "backend/cuda/check.h"

namespace kvo::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n) KVO_CUDA(cudaMalloc(&p_, n * sizeof(T)));
  }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(o.n_) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  int64_t nbytes() const { return int64_t(n_ * sizeof(T)); }
  // Grows (contents lost) to at least n elements.
  void reserve(size_t n) {
    if (n > n_) *this = DeviceBuffer(n);
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

class MappedHostBuffer {
 public:
  MappedHostBuffer() = default;
  explicit MappedHostBuffer(size_t bytes) : n_(bytes) {
    if (!bytes) return;
    KVO_CUDA(cudaHostAlloc(&host_, bytes, cudaHostAllocMapped));
    KVO_CUDA(cudaHostGetDevicePointer(&device_, host_, 0));
  }
  ~MappedHostBuffer() {
    if (host_) cudaFreeHost(host_);
  }
  MappedHostBuffer(MappedHostBuffer&& o) noexcept
      : host_(std::exchange(o.host_, nullptr)), device_(o.device_), n_(o.n_) {}
  MappedHostBuffer& operator=(MappedHostBuffer&& o) noexcept {
    std::swap(host_, o.host_);
    std::swap(device_, o.device_);
    std::swap(n_, o.n_);
    return *this;
  }
  uint8_t* host() const { return static_cast<uint8_t*>(host_); }
  const uint8_t* device() const { return static_cast<const uint8_t*>(device_); }
  int64_t nbytes() const { return int64_t(n_); }

 private:
  void* host_ = nullptr;
  void* device_ = nullptr;
  size_t n_ = 0;
};

}  // namespace kvo::cuda
