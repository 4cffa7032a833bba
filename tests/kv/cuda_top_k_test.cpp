// The CUDA selection kernel top_k_rows (kv/cuda/sparse_kernels.h) against the CPU's
// top_k_indices (kv/selection.h): the same indices, ascending, ties to the lowest index, for the
// k largest and (negate) the k smallest, on rows of distinct values, of many ties, of one value,
// and of signed zeros. Skipped without a CUDA build or device.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kv/selection.h"
#include "quant/device.h"
#ifdef KVO_HAVE_CUDA
#include <cuda_runtime.h>

#include "kv/cuda/buffers.h"
#include "kv/cuda/sparse_kernels.h"
#endif

namespace kvo {
namespace {

#ifdef KVO_HAVE_CUDA
enum class Values { distinct, ties, one_value, signed_zeros };

std::vector<float> make_row(int64_t n, Values kind, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> row(static_cast<size_t>(n));
  for (float& x : row) {
    switch (kind) {
      case Values::distinct:
        x = normal(rng);
        break;
      case Values::ties:  // 17 values: every top-k boundary falls inside a run of ties
        x = std::round(normal(rng) * 4.0f) / 4.0f;
        break;
      case Values::one_value:
        x = 0.5f;
        break;
      case Values::signed_zeros:  // -0 and +0 are one value for the CPU's comparisons
        x = (rng() % 3 == 0) ? 1.0f : ((rng() % 2) ? 0.0f : -0.0f);
        break;
    }
  }
  return row;
}

TEST(CudaTopK, EqualsCpuTopKIndices) {
  std::string why;
  if (!quant::cuda_device_available(&why)) GTEST_SKIP() << why;
  std::mt19937_64 rng(23);
  constexpr int kRows = 3;
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{8193}, int64_t{130944}})
    for (int64_t k : {int64_t{1}, (n + 2) / 3, int64_t{4096}, n})
      for (Values kind : {Values::distinct, Values::ties, Values::one_value, Values::signed_zeros})
        for (bool negate : {false, true}) {
          if (k > n) continue;
          SCOPED_TRACE(::testing::Message() << "n " << n << ", k " << k << ", values " << int(kind)
                                            << ", negate " << negate);
          std::vector<float> all;
          std::vector<std::vector<float>> rows;
          for (int r = 0; r < kRows; ++r) {
            rows.push_back(make_row(n, kind, rng));
            all.insert(all.end(), rows.back().begin(), rows.back().end());
          }
          cuda::DeviceBuffer<float> d_scores(all.size());
          cuda::DeviceBuffer<int32_t> d_out(size_t(kRows * k));
          KVO_CUDA(cudaMemcpy(d_scores.get(), all.data(), all.size() * sizeof(float),
                              cudaMemcpyHostToDevice));
          cuda::top_k_rows(d_scores.get(), kRows, n, k, negate, d_out.get(), nullptr);
          std::vector<int32_t> got(size_t(kRows * k));
          KVO_CUDA(cudaMemcpy(got.data(), d_out.get(), got.size() * sizeof(int32_t),
                              cudaMemcpyDeviceToHost));
          for (int r = 0; r < kRows; ++r) {
            std::vector<float> row = rows[size_t(r)];
            if (negate)
              for (float& x : row) x = -x;
            const std::vector<int64_t> want = top_k_indices(row, k);
            ASSERT_EQ(int64_t(want.size()), k);
            for (int64_t i = 0; i < k; ++i)
              ASSERT_EQ(got[size_t(r * k + i)], want[size_t(i)]) << "row " << r << ", pick " << i;
          }
        }
}
#endif

}  // namespace
}  // namespace kvo
