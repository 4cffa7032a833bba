#include "kv/cuda/buffers.h"

#include <algorithm>
#include <cstring>

namespace kvo::cuda {

// Delegates to the default constructor so that a failure below still runs the destructor.
MappedHostBuffer::MappedHostBuffer(size_t bytes, HostPages pages) : MappedHostBuffer() {
  if (!bytes) return;
  n_ = bytes;
  if (pages == HostPages::huge) {
    if (const HostMapping m = map_host_pages(bytes, pages); m.data) {
      host_ = m.data;
      mapped_bytes_ = m.length;
      touch_host_pages(m);
      register_mapping();
      return;
    }
  }
  KVO_CUDA(cudaHostAlloc(&host_, bytes, cudaHostAllocMapped));
  KVO_CUDA(cudaHostGetDevicePointer(&device_, host_, 0));
}

MappedHostBuffer::~MappedHostBuffer() {
  if (!host_) return;
  if (!mapped_bytes_) {
    cudaFreeHost(host_);
    return;
  }
  // Only a registered mapping: a failing unregister would linger as the next launch's error.
  if (device_) cudaHostUnregister(host_);
  unmap_host_pages({host_, mapped_bytes_});
}

void MappedHostBuffer::register_mapping() {
  KVO_CUDA(cudaHostRegister(host_, mapped_bytes_, cudaHostRegisterMapped));
  KVO_CUDA(cudaHostGetDevicePointer(&device_, host_, 0));
}

double MappedHostBuffer::huge_page_share() const {
  return cuda::huge_page_share(host_, n_);
}

std::vector<MappedHostBuffer> MappedHostBuffer::copies_of(
    const std::vector<const MappedHostBuffer*>& sources, HostPages pages) {
  std::vector<MappedHostBuffer> out(sources.size());
  // (buffer, offset) pieces of at most kPiece bytes, so the cores share even one large buffer.
  constexpr size_t kPiece = size_t{16} << 20;
  std::vector<std::pair<size_t, size_t>> pieces;
  for (size_t b = 0; b < sources.size(); ++b) {
    const size_t n = size_t(sources[b]->nbytes());
    if (!n) continue;
    HostMapping m = map_host_pages(n, pages);
    if (!m.data) m = map_host_pages(n, HostPages::small);
    out[b].host_ = m.data;
    out[b].n_ = n;
    out[b].mapped_bytes_ = m.length;
    for (size_t at = 0; at < n; at += kPiece) pieces.emplace_back(b, at);
  }
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < int64_t(pieces.size()); ++i) {
    const auto [b, at] = pieces[size_t(i)];
    const size_t n = std::min(kPiece, out[b].n_ - at);
    std::memcpy(out[b].host() + at, sources[b]->host() + at, n);
  }
  for (MappedHostBuffer& m : out)
    if (m.host_) m.register_mapping();
  return out;
}

}  // namespace kvo::cuda
