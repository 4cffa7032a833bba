// The zero-copy gather of the CUDA sparse policies (kv/cuda/sparse_kernels.h): records split into
// a host part (mapped pinned memory) and a device tail (HIGGS scales, kv_layout.h) come back
// whole, for aligned, unaligned and odd record sizes, and stores in 2 MiB pages
// (kv/cuda/host_pages.h) gather what stores in cudaHostAlloc's pages do. Skipped without a CUDA
// build or device.
//
// CudaGatherBench.* (set KVO_CUDA_BENCH=1) measures the gather's PCIe rate for scattered records
// of 64 (a per-head HIGGS d=2 record's codes), 68 (the same record with its scale, unaligned),
// 128 and 512 bytes, with 1 to 25 gathers in flight on their own streams (a batch's sequences),
// from a store in 4 KiB and one in 2 MiB pages: whether many concurrent gathers of small records
// run out of the GPU's translations of host pages (bench/RESULTS.md, issue 5).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quant/device.h"
#ifdef KVO_HAVE_CUDA
#include <cuda_runtime.h>

#include "kv/cuda/buffers.h"
#include "kv/cuda/sparse_kernels.h"
#endif

namespace kvo {
namespace {

#ifdef KVO_HAVE_CUDA
using cuda::DeviceBuffer;
using cuda::HostPages;
using cuda::MappedHostBuffer;

#define SKIP_WITHOUT_CUDA()                                       \
  do {                                                            \
    std::string why;                                              \
    if (!quant::cuda_device_available(&why)) GTEST_SKIP() << why; \
  } while (0)

template <typename T>
DeviceBuffer<T> upload(const std::vector<T>& host) {
  DeviceBuffer<T> d(host.size());
  KVO_CUDA(cudaMemcpy(d.get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// n random record indices below `records`, repeats allowed.
std::vector<int32_t> random_list(int64_t n, int64_t records, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> pick(0, records - 1);
  std::vector<int32_t> list(static_cast<size_t>(n));
  for (int32_t& r : list) r = int32_t(pick(rng));
  return list;
}

TEST(CudaGather, JoinsSplitRecords) {
  SKIP_WITHOUT_CUDA();
  std::mt19937_64 rng(5);
  // (record bytes, host bytes): per-head HIGGS d=2 at head_dim 128 and 64, a spanning record,
  // an fp8 record without a tail, and odd sizes that take the byte path.
  for (auto [rec, host] : std::vector<std::pair<int64_t, int64_t>>{
           {68, 64}, {36, 32}, {516, 512}, {128, 128}, {7, 7}, {11, 6}}) {
    SCOPED_TRACE(::testing::Message() << rec << "-byte records, " << host << " on the host");
    const int64_t n = 1000, picked = 300;
    std::vector<uint8_t> records(size_t(n * rec));
    for (uint8_t& b : records) b = uint8_t(rng());
    const DeviceBuffer<uint8_t> whole = upload(records);
    DeviceBuffer<uint8_t> parts(size_t(n * host)), tails(size_t(n * (rec - host)));
    cuda::split_records(whole.get(), n, rec, host, parts.get(), tails.get(), nullptr);
    MappedHostBuffer store(size_t(n * host));
    KVO_CUDA(cudaMemcpy(store.host(), parts.get(), size_t(n * host), cudaMemcpyDeviceToHost));
    const std::vector<int32_t> list = random_list(picked, n, rng);
    const DeviceBuffer<int32_t> d_list = upload(list);
    DeviceBuffer<uint8_t> staging(size_t(picked * rec));
    cuda::gather_records(store.device(), host, tails.get(), rec, d_list.get(), nullptr, picked,
                         nullptr, nullptr, nullptr, staging.get(), nullptr);
    std::vector<uint8_t> got(size_t(picked * rec));
    KVO_CUDA(cudaMemcpy(got.data(), staging.get(), got.size(), cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < picked; ++i)
      ASSERT_TRUE(std::equal(got.begin() + i * rec, got.begin() + (i + 1) * rec,
                             records.begin() + list[size_t(i)] * rec))
          << "row " << i << " (record " << list[size_t(i)] << ")";
  }
}

// 64-byte records gathered from stores in 4 KiB and 2 MiB pages, and from copies_of both in each,
// all come back as written; the stores span two whole huge pages and a tail of small ones, and
// the list ends with the last record.
TEST(CudaGather, HugePageStoresGatherLikeSmallPages) {
  SKIP_WITHOUT_CUDA();
  std::mt19937_64 rng(7);
  constexpr int64_t rec = 64, n = ((int64_t{5} << 20) + 4 * rec) / rec, picked = 4096;
  std::vector<uint8_t> records(size_t(n * rec));
  for (uint8_t& b : records) b = uint8_t(rng());
  MappedHostBuffer small(records.size(), HostPages::small), huge(records.size(), HostPages::huge);
  std::memcpy(small.host(), records.data(), records.size());
  std::memcpy(huge.host(), records.data(), records.size());
  std::vector<MappedHostBuffer> copies =
      MappedHostBuffer::copies_of({&small, &huge}, HostPages::small);
  for (MappedHostBuffer& c : MappedHostBuffer::copies_of({&small, &huge}, HostPages::huge))
    copies.push_back(std::move(c));
  std::vector<int32_t> list = random_list(picked - 1, n, rng);
  list.push_back(int32_t(n - 1));
  const DeviceBuffer<int32_t> d_list = upload(list);
  std::vector<uint8_t> want(size_t(picked * rec));
  for (int64_t i = 0; i < picked; ++i)
    std::memcpy(want.data() + i * rec, records.data() + list[size_t(i)] * rec, size_t(rec));
  const std::vector<std::pair<const char*, const MappedHostBuffer*>> stores{
      {"4 KiB pages", &small},
      {"2 MiB pages", &huge},
      {"4 KiB copy of 4 KiB", &copies[0]},
      {"4 KiB copy of 2 MiB", &copies[1]},
      {"2 MiB copy of 4 KiB", &copies[2]},
      {"2 MiB copy of 2 MiB", &copies[3]}};
  for (const auto& [name, store] : stores) {
    SCOPED_TRACE(name);
    DeviceBuffer<uint8_t> staging(want.size());
    cuda::gather_records(store->device(), rec, nullptr, rec, d_list.get(), nullptr, picked, nullptr,
                         nullptr, nullptr, staging.get(), nullptr);
    std::vector<uint8_t> got(want.size());
    KVO_CUDA(cudaMemcpy(got.data(), staging.get(), got.size(), cudaMemcpyDeviceToHost));
    EXPECT_TRUE(got == want);
  }
}

// GB/s of record bytes gathered from a 1 GiB mapped store in 4 KiB or 2 MiB pages: `streams`
// gathers of 32768 scattered records each (one layer's keys of a 128K sequence at budget 4096 x
// 8 heads) in flight at once, 16 rounds. Each store's line says how much of it huge pages back
// (none where the kernel has none) and how long it took to allocate.
TEST(CudaGatherBench, ScatteredRecordsOverPcie) {
  if (!std::getenv("KVO_CUDA_BENCH")) GTEST_SKIP() << "set KVO_CUDA_BENCH=1";
  SKIP_WITHOUT_CUDA();
  constexpr int64_t kStoreBytes = int64_t{1} << 30, kPerGather = 32768, kRounds = 16;
  std::mt19937_64 rng(9);
  for (HostPages pages : {HostPages::small, HostPages::huge}) {
    const char* page_name = pages == HostPages::huge ? "2m" : "4k";
    const auto t_alloc = std::chrono::steady_clock::now();
    MappedHostBuffer store(static_cast<size_t>(kStoreBytes), pages);
    const double alloc_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_alloc).count();
    std::printf("bench gather store, %s pages: %.0f%% in 2 MiB pages, allocated in %.0f ms\n",
                page_name, 100.0 * store.huge_page_share(), 1e3 * alloc_s);
    for (int64_t rec : {64, 68, 128, 512})
      for (int streams : {1, 4, 25}) {
        std::vector<cudaStream_t> s(static_cast<size_t>(streams));
        std::vector<DeviceBuffer<int32_t>> lists;
        std::vector<DeviceBuffer<uint8_t>> staging;
        for (cudaStream_t& x : s) {
          KVO_CUDA(cudaStreamCreateWithFlags(&x, cudaStreamNonBlocking));
          lists.push_back(upload(random_list(kPerGather, kStoreBytes / rec, rng)));
          staging.emplace_back(size_t(kPerGather * rec));
        }
        auto round = [&] {
          for (int i = 0; i < streams; ++i)
            cuda::gather_records(store.device(), rec, nullptr, rec, lists[size_t(i)].get(), nullptr,
                                 kPerGather, nullptr, nullptr, nullptr, staging[size_t(i)].get(),
                                 s[size_t(i)]);
        };
        round();  // warm-up
        KVO_CUDA(cudaDeviceSynchronize());
        const auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < kRounds; ++r) round();
        KVO_CUDA(cudaDeviceSynchronize());
        const double s_elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double gbs = double(kRounds * streams * kPerGather * rec) / s_elapsed / 1e9;
        std::printf("bench gather %3lld-byte records, %2d streams, %s pages: %.2f GB/s\n",
                    (long long)rec, streams, page_name, gbs);
        EXPECT_GT(gbs, 0.0);
        for (cudaStream_t x : s) cudaStreamDestroy(x);
      }
  }
}

// Where the collapse of concurrent small gathers comes from: 64-byte records, gathers of 32768
// each from a 1 GiB store in 2 MiB pages, every round with fresh lists (the bench above repeats
// one list per stream), each gather in its own window of the store.
// - "sorted": one ascending list in a window of 2 MiB (one huge page), 64 MiB (one layer's keys
//   of a 128K sequence, 8 heads x 64-byte records) or the whole store. If the rate follows the
//   window, not the number of gathers in flight, the limit is translating host pages.
// - "per-head": the policy's list (selected_records) in a 64 MiB window: 8 ascending runs of 4096
//   tokens, record token * 8 + head. Reading it rank by rank across the runs instead, so that the
//   reads in flight stay closer, gave the same rate (H200, bench/RESULTS.md): it was dropped.
TEST(CudaGatherBench, LocalityOfScatteredRecords) {
  if (!std::getenv("KVO_CUDA_BENCH")) GTEST_SKIP() << "set KVO_CUDA_BENCH=1";
  SKIP_WITHOUT_CUDA();
  constexpr int64_t kStoreBytes = int64_t{1} << 30, kPerGather = 32768, kRounds = 8, kRec = 64;
  constexpr int kHeads = 8;
  std::mt19937_64 rng(11);
  MappedHostBuffer store(static_cast<size_t>(kStoreBytes), HostPages::huge);
  // A gather's list in a window of `window` bytes at a random place of the store.
  auto sorted_list = [&](int64_t window) {
    std::vector<int32_t> list = random_list(kPerGather, window / kRec, rng);
    std::sort(list.begin(), list.end());
    return list;
  };
  auto per_head_list = [&](int64_t window) {
    const int64_t tokens = window / kRec / kHeads, per_head = kPerGather / kHeads;
    std::vector<int32_t> list;
    for (int h = 0; h < kHeads; ++h) {
      std::vector<int32_t> run = random_list(per_head, tokens, rng);
      std::sort(run.begin(), run.end());
      for (int32_t t : run) list.push_back(t * kHeads + h);
    }
    return list;
  };
  auto measure = [&](const char* what, int64_t window, bool per_head, int streams) {
    std::vector<cudaStream_t> s(static_cast<size_t>(streams));
    for (cudaStream_t& x : s) KVO_CUDA(cudaStreamCreateWithFlags(&x, cudaStreamNonBlocking));
    // lists[round * streams + i]: gather i's records in round `round` (kRounds: the warm-up).
    std::vector<DeviceBuffer<int32_t>> lists;
    for (int64_t l = 0; l < (kRounds + 1) * streams; ++l) {
      const int64_t first = int64_t(rng() % uint64_t(kStoreBytes / window)) * (window / kRec);
      std::vector<int32_t> list = per_head ? per_head_list(window) : sorted_list(window);
      for (int32_t& r : list) r += int32_t(first);
      lists.push_back(upload(list));
    }
    std::vector<DeviceBuffer<uint8_t>> staging;
    for (int i = 0; i < streams; ++i) staging.emplace_back(size_t(kPerGather * kRec));
    auto round = [&](int r) {
      for (int i = 0; i < streams; ++i)
        cuda::gather_records(store.device(), kRec, nullptr, kRec,
                             lists[size_t(r * streams + i)].get(), nullptr, kPerGather, nullptr,
                             nullptr, nullptr, staging[size_t(i)].get(), s[size_t(i)]);
    };
    round(kRounds);
    KVO_CUDA(cudaDeviceSynchronize());
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < kRounds; ++r) round(r);
    KVO_CUDA(cudaDeviceSynchronize());
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double records = double(kRounds * streams * kPerGather);
    std::printf("bench gather %-8s window %4lld MiB, %2d streams: %6.2f GB/s, %5.0f M records/s\n",
                what, (long long)(window >> 20), streams, records * kRec / sec / 1e9,
                records / sec / 1e6);
    EXPECT_GT(sec, 0.0);
    for (cudaStream_t x : s) cudaStreamDestroy(x);
  };
  for (int64_t window : {int64_t{2} << 20, int64_t{64} << 20, kStoreBytes})
    for (int streams : {1, 25}) measure("sorted", window, false, streams);
  for (int streams : {1, 25}) measure("per-head", int64_t{64} << 20, true, streams);
}

#endif

}  // namespace
}  // namespace kvo
