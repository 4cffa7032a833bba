// Owning buffers of the CUDA KV policies: typed device memory, and pinned host memory mapped
// into the device's address space (the offloaded stores: kernels read them over PCIe).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "backend/cuda/check.h"
#include "kv/cuda/host_pages.h"

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

// Pinned host memory mapped into the device's address space, allocated in whole pages (so a
// kernel may read a few bytes past the end) and handed back on destruction. HostPages::huge
// (the default unless KVO_HOST_PAGES=4k, host_pages.h) backs it with 2 MiB pages, zeroed on
// every core and then pinned and mapped (cudaHostRegister); HostPages::small, or huge where
// the kernel has none, takes cudaHostAlloc's pages, zeroed and pinned by the driver on one
// thread.
class MappedHostBuffer {
 public:
  MappedHostBuffer() = default;
  explicit MappedHostBuffer(size_t bytes, HostPages pages = host_pages_from_env());
  ~MappedHostBuffer();
  MappedHostBuffer(MappedHostBuffer&& o) noexcept
      : host_(std::exchange(o.host_, nullptr)),
        device_(o.device_),
        n_(o.n_),
        mapped_bytes_(o.mapped_bytes_) {}
  MappedHostBuffer& operator=(MappedHostBuffer&& o) noexcept {
    std::swap(host_, o.host_);
    std::swap(device_, o.device_);
    std::swap(n_, o.n_);
    std::swap(mapped_bytes_, o.mapped_bytes_);
    return *this;
  }
  uint8_t* host() const { return static_cast<uint8_t*>(host_); }
  const uint8_t* device() const { return static_cast<const uint8_t*>(device_); }
  int64_t nbytes() const { return int64_t(n_); }
  // The share of the buffer that 2 MiB pages back (huge_page_share: reads /proc/self/smaps).
  double huge_page_share() const;

  // Copies of `sources` in new buffers of `pages` (kvoffload bench --shared-prompt copies GiBs
  // per sequence). cudaHostAlloc zeroes and pins every page on one thread, then a memcpy fills
  // it (~3 s for a 4 GiB yakv sequence at 128K on the H200); here every core copies into fresh
  // pages, so their first touch is spread over the cores, and the filled pages are then pinned
  // and mapped (cudaHostRegister): 0.58 s for the same copy on 16 cores.
  static std::vector<MappedHostBuffer> copies_of(
      const std::vector<const MappedHostBuffer*>& sources, HostPages pages = host_pages_from_env());

 private:
  void* host_ = nullptr;
  void* device_ = nullptr;
  size_t n_ = 0;
  size_t mapped_bytes_ = 0;  // > 0: host_ is a map_host_pages mapping of this length

  // Pins the mapping and maps it into the device's address space (sets device_).
  void register_mapping();
};

}  // namespace kvo::cuda
