#include "quant/hadamard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "util/error.h"

namespace kvo::quant {
namespace {

// Sylvester entry H[i][j] = (-1)^popcount(i & j).
float sylvester(size_t i, size_t j) {
  return __builtin_popcountll(i & j) % 2 ? -1.0f : 1.0f;
}

TEST(Hadamard, MatchesSylvesterMatrix) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (size_t h : {1, 2, 8, 64, 256}) {
    std::vector<float> x(h), y;
    for (float& v : x) v = nd(rng);
    y = x;
    fwht(y.data(), h);
    for (size_t i = 0; i < h; ++i) {
      double ref = 0;
      for (size_t j = 0; j < h; ++j) ref += sylvester(i, j) * x[j];
      EXPECT_NEAR(y[i], ref, 1e-4 * std::sqrt(double(h))) << "h=" << h << " i=" << i;
    }
  }
}

TEST(Hadamard, TwiceIsTimesH) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd;
  for (size_t h = 64; h <= 4096; h *= 2) {
    std::vector<float> x(3 * h), y;
    for (float& v : x) v = nd(rng);
    y = x;
    fwht_rows(y.data(), 3, h);
    fwht_rows(y.data(), 3, h);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i] / float(h), x[i], 1e-4) << h;
  }
}

TEST(Hadamard, RejectsNonPowerOfTwo) {
  std::vector<float> x(96);
  EXPECT_THROW(fwht(x.data(), 96), Error);
}

TEST(Hadamard, CanonicalSumSquares) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (size_t h : {64, 128, 1024, 4096}) {
    std::vector<float> x(h);
    double ref = 0;
    for (float& v : x) {
      v = nd(rng);
      ref += double(v) * v;
    }
    EXPECT_NEAR(canonical_sum_squares(x.data(), h), ref, 1e-5 * ref);
  }
}

}  // namespace
}  // namespace kvo::quant
