#include "kv/cuda/host_pages.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

#include "util/error.h"

namespace kvo::cuda {
namespace {

constexpr size_t kSmallPage = size_t{4} << 10, kHugePage = size_t{2} << 20;

size_t round_up(size_t n, size_t unit) {
  return (n + unit - 1) / unit * unit;
}

void* map_anonymous(size_t length) {
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  check(p != MAP_FAILED, "cannot map {} bytes of host memory for a KV store: {}", length,
        std::strerror(errno));
  return p;
}

}  // namespace

bool transparent_huge_pages_enabled() {
  // The setting lists "always madvise never" with the chosen one in brackets; no file: a kernel
  // without them.
  static const bool enabled = [] {
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string setting;
    return std::getline(f, setting) && setting.find("[never]") == std::string::npos;
  }();
  return enabled;
}

HostPages host_pages_from_env() {
  const char* v = std::getenv("KVO_HOST_PAGES");
  if (!v || std::string_view(v) == "2m") return HostPages::huge;
  check(std::string_view(v) == "4k", "KVO_HOST_PAGES is '{}': use 4k or 2m", v);
  return HostPages::small;
}

HostMapping map_host_pages(size_t bytes, HostPages pages) {
  const size_t length = round_up(std::max<size_t>(bytes, 1), kSmallPage);
  if (pages == HostPages::small) {
    void* p = map_anonymous(length);
    madvise(p, length, MADV_NOHUGEPAGE);  // a hint: without THP support it is moot anyway
    return {p, length};
  }
  if (!transparent_huge_pages_enabled()) return {};
  // Over-map by a huge page less one small page, then cut the ends off so the mapping starts on
  // a 2 MiB boundary: the kernel puts huge pages only at 2 MiB-aligned addresses.
  const size_t slack = kHugePage - kSmallPage;
  auto* raw = static_cast<uint8_t*>(map_anonymous(length + slack));
  auto* start = reinterpret_cast<uint8_t*>(round_up(reinterpret_cast<uintptr_t>(raw), kHugePage));
  const size_t head = size_t(start - raw);
  if (head) munmap(raw, head);
  if (slack > head) munmap(start + length, slack - head);
  if (madvise(start, length, MADV_HUGEPAGE) != 0) {
    munmap(start, length);
    return {};
  }
  return {start, length};
}

void unmap_host_pages(const HostMapping& m) {
  if (m.data) munmap(m.data, m.length);
}

void touch_host_pages(const HostMapping& m) {
  // Pieces of several huge pages, so the cores share even one store; one write per 4 KiB also
  // faults in the small pages of a range the kernel could not give a huge page.
  constexpr size_t kPiece = size_t{16} << 20;
  auto* p = static_cast<uint8_t*>(m.data);
#pragma omp parallel for schedule(dynamic)
  for (int64_t at = 0; at < int64_t(m.length); at += int64_t(kPiece)) {
    const size_t end = std::min(m.length, size_t(at) + kPiece);
    for (size_t i = size_t(at); i < end; i += kSmallPage) p[i] = 0;
  }
}

double huge_page_share(const void* p, size_t bytes) {
  if (!bytes) return 0.0;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + bytes;
  std::ifstream smaps("/proc/self/smaps");
  // Each mapping is a header "start-end perms ..." and then "Field: value kB" lines; Size comes
  // before AnonHugePages.
  double huge = 0.0;
  size_t overlap = 0, size_kb = 0;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &start, &end) == 2) {
      overlap = start < hi && lo < end
                    ? std::min<uintptr_t>(end, hi) - std::max<uintptr_t>(start, lo)
                    : 0;
      continue;
    }
    if (!overlap) continue;
    size_t kb = 0;
    if (std::sscanf(line.c_str(), "Size: %zu kB", &kb) == 1)
      size_kb = kb;
    else if (std::sscanf(line.c_str(), "AnonHugePages: %zu kB", &kb) == 1 && size_kb)
      huge += double(overlap) * double(kb) / double(size_kb);
  }
  return huge / double(bytes);
}

}  // namespace kvo::cuda
