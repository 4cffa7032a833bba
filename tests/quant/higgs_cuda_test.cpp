// CUDA HIGGS kernels against the CPU reference. Skipped without a CUDA build or device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <tuple>

#include "quant/device.h"
#include "quant/hadamard.h"
#include "quant/higgs.h"
#ifdef KVO_HAVE_CUDA
#include "quant/cuda/higgs_cuda.h"
#endif

namespace kvo::quant {
namespace {

#define SKIP_WITHOUT_CUDA()                                \
  do {                                                     \
    std::string why;                                       \
    if (!cuda_device_available(&why)) GTEST_SKIP() << why; \
  } while (0)

std::vector<float> normal_vectors(size_t n, size_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * dim);
  for (float& v : x) v = nd(rng);
  return x;
}

#ifdef KVO_HAVE_CUDA
struct Agreement {
  size_t codes = 0, differ = 0, near_ties = 0, scales_differ = 0;
};

// Compares CUDA and CPU records code by code. A differing code counts as an exact near-tie
// when the CPU's ranking values of both points (grid.h) differ by at most 1e-6 (1 + ||y_t||^2).
Agreement compare(const HiggsQuantizer& q, const std::vector<float>& x, size_t n, size_t dim) {
  const auto gpu = cuda::higgs_encode_host(q, x.data(), n, dim);
  const auto cpu = q.encode(x.data(), n, dim);
  Agreement a;
  const size_t rec = q.bytes_per_vector(dim), cb = q.codes_bytes(dim), T = q.tuples();
  const size_t G = q.groups(dim), h = q.group(), p = q.p();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* rg = gpu.data() + i * rec;
    const uint8_t* rc = cpu.data() + i * rec;
    if (std::memcmp(rg + cb, rc + cb, rec - cb) != 0) ++a.scales_differ;
    for (size_t g = 0; g < G; ++g)
      for (size_t t = 0; t < T; ++t) {
        const size_t idx = g * T + t;
        auto code = [&](const uint8_t* r) {
          return q.code_bytes() == 1 ? uint32_t(r[idx])
                                     : uint32_t(r[2 * idx] | (r[2 * idx + 1] << 8));
        };
        ++a.codes;
        const uint32_t cg = code(rg), cc = code(rc);
        if (cg == cc) continue;
        ++a.differ;
        // Recompute y of this group on the CPU to measure the two distances.
        std::vector<float> xg(h, 0.0f);
        for (size_t k = 0; k < h && g * h + k < dim; ++k) xg[k] = x[i * dim + g * h + k];
        std::vector<uint32_t> codes(T);
        float s;
        q.encode_group(xg.data(), codes.data(), &s);
        std::vector<float> y(xg);
        fwht(y.data(), h);
        float tuple[64] = {};
        for (size_t j = 0; j < p; ++j) tuple[j] = t * p + j < h && s > 0 ? y[t * p + j] / s : 0.0f;
        const float dg = q.grid().distance(tuple, cg), dc = q.grid().distance(tuple, cc);
        float y2 = 0;
        for (size_t j = 0; j < p; ++j) y2 += tuple[j] * tuple[j];
        if (std::fabs(dg - dc) <= 1e-6f * (1.0f + y2)) ++a.near_ties;
      }
  }
  return a;
}
#endif

TEST(HiggsCuda, CodesMatchCpuOnOneMillionVectors) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  size_t n = 1 << 20;
  if (const char* e = std::getenv("KVO_QUANT_CUDA_VECTORS")) n = std::strtoull(e, nullptr, 10);
  const size_t dim = 128;
  const auto x = normal_vectors(n, dim, 31);
  HiggsQuantizer q(4, 256);
  const Agreement a = compare(q, x, n, dim);
  std::printf(
      "[ higgs:d=4,n=256 ] %zu vectors, %zu codes: %zu differ (%zu exact near-ties), "
      "%zu vectors with differing scales\n",
      n, a.codes, a.differ, a.near_ties, a.scales_differ);
  EXPECT_EQ(a.differ, a.near_ties);
  EXPECT_LT(double(a.near_ties), 1e-5 * double(a.codes));
  EXPECT_EQ(a.scales_differ, 0u);
#endif
}

TEST(HiggsCuda, CodesMatchCpuForEveryShapeAndGrid) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  const std::vector<std::tuple<int, int, int, size_t>> cases = {
      {2, 256, 64, 200},     {2, 16, 128, 128},    {2, 64, 256, 256},    {4, 16, 512, 1024},
      {6, 4096, 128, 128},   {8, 128, 1024, 1024}, {8, 256, 2048, 2048}, {8, 4096, 128, 256},
      {16, 256, 4096, 4096}, {2, 256, 1024, 1024}};
  for (auto [p, npts, group, dim] : cases) {
    HiggsQuantizer q(p, npts, group);
    const size_t n = 2000;
    const auto x = normal_vectors(n, dim, 32);
    const Agreement a = compare(q, x, n, dim);
    EXPECT_EQ(a.differ, a.near_ties) << q.spec();
    EXPECT_EQ(a.scales_differ, 0u) << q.spec();
  }
#endif
}

TEST(HiggsCuda, ScoreMatchesCpu) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  const std::vector<std::tuple<int, int, int, size_t>> cases = {{4, 256, 128, 128},
                                                                {2, 256, 128, 128},
                                                                {2, 256, 1024, 1024},
                                                                {6, 4096, 128, 128},
                                                                {8, 256, 64, 200}};
  for (auto [p, npts, group, dim] : cases) {
    HiggsQuantizer q(p, npts, group);
    const size_t n = 5000;
    const auto keys = normal_vectors(n, dim, 33), query = normal_vectors(1, dim, 34);
    const auto codes = q.encode(keys.data(), n, dim);
    const auto gpu = cuda::higgs_score_host(q, query.data(), codes.data(), n, dim);
    std::vector<float> cpu(n), dec(n * dim);
    const auto qrot = q.rotate_query(query.data(), dim);
    q.score(qrot.data(), codes.data(), n, dim, cpu.data());
    q.decode(codes.data(), n, dim, dec.data());
    for (size_t i = 0; i < n; ++i) {
      double mag = 0;
      for (size_t j = 0; j < dim; ++j) mag += std::fabs(double(query[j]) * dec[i * dim + j]);
      ASSERT_NEAR(gpu[i], cpu[i], 1e-5 * mag + 1e-6) << q.spec() << " key " << i;
    }
  }
#endif
}

TEST(HiggsCuda, DecodeBf16MatchesCpu) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  for (auto [p, npts, group] : std::vector<std::tuple<int, int, int>>{
           {4, 256, 128}, {2, 256, 64}, {2, 256, 1024}, {6, 4096, 4096}}) {
    HiggsQuantizer q(p, npts, group);
    const size_t n = 300, dim = 4096 + 128;
    const auto x = normal_vectors(n, dim, 35);
    const auto codes = q.encode(x.data(), n, dim);
    const auto gpu = cuda::higgs_decode_bf16_host(q, codes.data(), n, dim);
    std::vector<float> cpu(n * dim);
    q.decode(codes.data(), n, dim, cpu.data());
    size_t off_by_one = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
      const float g = bf16_to_float(gpu[i]);
      ASSERT_NEAR(g, cpu[i], std::fabs(cpu[i]) / 128 + 1e-6) << q.spec() << " " << i;
      off_by_one += gpu[i] != float_to_bf16(cpu[i]);
    }
    EXPECT_LT(off_by_one, cpu.size() / 100) << q.spec();
  }
#endif
}

}  // namespace
}  // namespace kvo::quant
