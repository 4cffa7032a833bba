#include "kv/cuda/buffers.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "util/error.h"

namespace kvo::cuda {

MappedHostBuffer::MappedHostBuffer(size_t bytes) : n_(bytes) {
  if (!bytes) return;
  KVO_CUDA(cudaHostAlloc(&host_, bytes, cudaHostAllocMapped));
  KVO_CUDA(cudaHostGetDevicePointer(&device_, host_, 0));
}

MappedHostBuffer::~MappedHostBuffer() {
  if (!host_) return;
  if (mapped_bytes_) {
    cudaHostUnregister(host_);
    munmap(host_, mapped_bytes_);
  } else {
    cudaFreeHost(host_);
  }
}

std::vector<MappedHostBuffer> MappedHostBuffer::copies_of(
    const std::vector<const MappedHostBuffer*>& sources) {
  constexpr size_t kHugePage = size_t{2} << 20;
  std::vector<MappedHostBuffer> out(sources.size());
  // (buffer, offset) pieces of at most kPiece bytes, so the cores share even one large buffer.
  constexpr size_t kPiece = size_t{16} << 20;
  std::vector<std::pair<size_t, size_t>> pieces;
  for (size_t b = 0; b < sources.size(); ++b) {
    const size_t n = size_t(sources[b]->nbytes());
    if (!n) continue;
    const size_t len = (n + kHugePage - 1) / kHugePage * kHugePage;
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(p != MAP_FAILED, "cannot map {} bytes of host memory for a KV store copy", len);
    madvise(p, len, MADV_HUGEPAGE);  // fewer faults and page pins; a hint only
    out[b].host_ = p;
    out[b].n_ = n;
    out[b].mapped_bytes_ = len;
    for (size_t at = 0; at < n; at += kPiece) pieces.emplace_back(b, at);
  }
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < int64_t(pieces.size()); ++i) {
    const auto [b, at] = pieces[size_t(i)];
    const size_t n = std::min(kPiece, out[b].n_ - at);
    std::memcpy(out[b].host() + at, sources[b]->host() + at, n);
  }
  for (MappedHostBuffer& m : out) {
    if (!m.host_) continue;
    KVO_CUDA(cudaHostRegister(m.host_, m.mapped_bytes_, cudaHostRegisterMapped));
    KVO_CUDA(cudaHostGetDevicePointer(&m.device_, m.host_, 0));
  }
  return out;
}

}  // namespace kvo::cuda
