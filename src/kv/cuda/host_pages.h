// Anonymous host memory for the offloaded KV stores, backed by 2 MiB pages where the kernel has
// transparent huge pages. The GPU reads the stores' scattered records through address
// translations of their host pages; with 4 KiB pages a 1 GiB store is 262,144 of them, and many
// concurrent gathers of small records stall at a fixed ~111 M reads/s (bench/RESULTS.md, issue 5);
// 2 MiB pages make it 512. Plain Linux calls only: the CUDA side (pinning, mapping) is in
// buffers.h.
#pragma once
#include <cstddef>

namespace kvo::cuda {

// The pages asked for: 4 KiB, or 2 MiB (transparent huge pages).
enum class HostPages { small, huge };

// KVO_HOST_PAGES=4k|2m (default 2m): what the stores ask for when the caller does not say, so a
// run can be repeated with 4 KiB pages; 2m still falls back to 4 KiB pages where the kernel has
// no transparent huge pages (/sys/kernel/mm/transparent_hugepage/enabled = never).
HostPages host_pages_from_env();

// Whether the kernel gives transparent huge pages to a mapping that asks for them
// (/sys/kernel/mm/transparent_hugepage/enabled is "always" or "madvise").
bool transparent_huge_pages_enabled();

// A private anonymous mapping of whole 4 KiB pages; data == nullptr: none.
struct HostMapping {
  void* data = nullptr;
  size_t length = 0;
};

// A mapping of at least `bytes`. HostPages::huge: it starts on a 2 MiB boundary and is marked for
// huge pages (MADV_HUGEPAGE) before anything touches it, so every whole 2 MiB of it gets one
// page at its first touch; none (data == nullptr) where the kernel has no transparent huge
// pages. HostPages::small: marked MADV_NOHUGEPAGE, so it stays in 4 KiB pages even where the
// kernel gives huge pages to every mapping. Free it with unmap_host_pages.
HostMapping map_host_pages(size_t bytes, HostPages pages);
void unmap_host_pages(const HostMapping& m);

// Faults every page of `m` in (the kernel zeroes each at its first touch), spread over the
// cores: zeroing GiBs on the one thread that pins them later takes seconds.
void touch_host_pages(const HostMapping& m);

// The share of [p, p + bytes) backed by transparent huge pages, from /proc/self/smaps (its
// AnonHugePages over the size of each mapping holding the range; neighbouring mappings merged
// with it count as well). Reads the whole file: for tests and benchmarks, not hot paths.
double huge_page_share(const void* p, size_t bytes);

}  // namespace kvo::cuda
