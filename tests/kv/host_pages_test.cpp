// Host memory for the CUDA KV stores (kv/cuda/host_pages.h): plain Linux, so these run on any
// machine of a CUDA build, GPU or not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "util/error.h"
#ifdef KVO_HAVE_CUDA
#include "kv/cuda/host_pages.h"
#endif

namespace kvo {
namespace {

#ifdef KVO_HAVE_CUDA
using cuda::HostMapping;
using cuda::HostPages;

constexpr size_t kHugePage = size_t{2} << 20;

// Two whole huge pages and an odd tail.
constexpr size_t kBytes = 2 * kHugePage + 12345;

TEST(HostPages, SmallPagesAreZeroedAndNeverHuge) {
  const HostMapping m = cuda::map_host_pages(kBytes, HostPages::small);
  ASSERT_NE(m.data, nullptr);
  EXPECT_GE(m.length, kBytes);
  EXPECT_EQ(m.length % 4096, 0u);
  cuda::touch_host_pages(m);
  const auto* p = static_cast<const uint8_t*>(m.data);
  EXPECT_TRUE(std::all_of(p, p + m.length, [](uint8_t b) { return b == 0; }));
  EXPECT_EQ(cuda::huge_page_share(m.data, kBytes), 0.0);
  cuda::unmap_host_pages(m);
}

TEST(HostPages, HugePagesStartAlignedAndBackTheWholeHugePages) {
  const HostMapping m = cuda::map_host_pages(kBytes, HostPages::huge);
  if (!cuda::transparent_huge_pages_enabled()) {
    EXPECT_EQ(m.data, nullptr) << "no transparent huge pages here, yet a mapping came back";
    return;
  }
  ASSERT_NE(m.data, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m.data) % kHugePage, 0u);
  EXPECT_GE(m.length, kBytes);
  cuda::touch_host_pages(m);
  const auto* p = static_cast<const uint8_t*>(m.data);
  EXPECT_TRUE(std::all_of(p, p + m.length, [](uint8_t b) { return b == 0; }));
  // The tail past the last whole huge page stays in small pages; the kernel may also be out of
  // free 2 MiB blocks, so any huge page at all shows the mapping asked for them rightly.
  const double share = cuda::huge_page_share(m.data, kBytes);
  EXPECT_GT(share, 0.0);
  EXPECT_LE(share, double(2 * kHugePage) / double(kBytes) + 1e-9);
  cuda::unmap_host_pages(m);
}

TEST(HostPages, EnvironmentChoosesThePages) {
  const char* before = std::getenv("KVO_HOST_PAGES");
  const std::string saved = before ? before : "";
  unsetenv("KVO_HOST_PAGES");
  EXPECT_EQ(cuda::host_pages_from_env(), HostPages::huge);
  setenv("KVO_HOST_PAGES", "4k", 1);
  EXPECT_EQ(cuda::host_pages_from_env(), HostPages::small);
  setenv("KVO_HOST_PAGES", "2m", 1);
  EXPECT_EQ(cuda::host_pages_from_env(), HostPages::huge);
  setenv("KVO_HOST_PAGES", "1g", 1);
  EXPECT_THROW(cuda::host_pages_from_env(), Error);
  if (before)
    setenv("KVO_HOST_PAGES", saved.c_str(), 1);
  else
    unsetenv("KVO_HOST_PAGES");
}
#endif

}  // namespace
}  // namespace kvo
