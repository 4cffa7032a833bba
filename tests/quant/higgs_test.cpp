#include "quant/higgs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "quant/grid.h"
#include "util/error.h"

namespace kvo::quant {
namespace {

std::vector<float> normal_vectors(size_t n, size_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * dim);
  for (float& v : x) v = nd(rng);
  return x;
}

double mse_per_value(const Quantizer& q, const std::vector<float>& x, size_t n, size_t dim) {
  std::vector<float> y(x.size());
  q.decode(q.encode(x.data(), n, dim).data(), n, dim, y.data());
  double se = 0;
  for (size_t i = 0; i < x.size(); ++i) se += double(x[i] - y[i]) * (x[i] - y[i]);
  return se / double(x.size());
}

// DESIGN.md §4: measured MSE per value on N(0,1), Monte Carlo +-3%.
TEST(Higgs, MsePerValueMatchesDesign) {
  struct Fact {
    int p, n;
    double mse;
  };
  const Fact facts[] = {{2, 16, 0.106},  {2, 64, 0.029},  {2, 256, 0.0078},
                        {4, 256, 0.095}, {8, 256, 0.324}, {16, 256, 0.584}};
  const size_t n = 2048, dim = 128;
  const auto x = normal_vectors(n, dim, 11);
  for (const Fact& f : facts) {
    HiggsQuantizer q(f.p, f.n);
    const double mse = mse_per_value(q, x, n, dim);
    EXPECT_NEAR(mse, f.mse, 0.03 * f.mse) << q.spec();
  }
}

// Grids without a DESIGN.md figure: between the Shannon bound 2^(-2R) and twice it.
TEST(Higgs, OtherShippedGridsWithinRateDistortionBounds) {
  const size_t n = 512, dim = 128;
  const auto x = normal_vectors(n, dim, 12);
  const auto grids = available_grids();
  EXPECT_GE(grids.size(), 11u);
  for (auto [p, npts] : grids) {
    HiggsQuantizer q(p, npts);
    const double rate = std::log2(double(npts)) / p;
    const double mse = mse_per_value(q, x, n, dim);
    EXPECT_GT(mse, std::pow(2.0, -2 * rate)) << q.spec();
    EXPECT_LT(mse, 2.0 * std::pow(2.0, -2 * rate)) << q.spec();
  }
}

TEST(Higgs, BitsPerValueIncludeScales) {
  EXPECT_DOUBLE_EQ(HiggsQuantizer(4, 256).bits_per_value(128), 2.25);
  EXPECT_DOUBLE_EQ(HiggsQuantizer(2, 256, 1024).bits_per_value(1024), 4.0 + 32.0 / 1024);
  EXPECT_DOUBLE_EQ(HiggsQuantizer(8, 256, 64).bits_per_value(128), 1.5);
  // n > 256: uint16 code words (not bit-packed), so 16 bits per 8 values.
  EXPECT_DOUBLE_EQ(HiggsQuantizer(8, 4096, 128).bits_per_value(128), 2.0 + 0.25);
}

TEST(Higgs, RecordLayout) {
  HiggsQuantizer q(4, 256, 64);
  const size_t dim = 200;  // 4 groups, the last zero-padded
  EXPECT_EQ(q.groups(dim), 4u);
  EXPECT_EQ(q.codes_bytes(dim), 4u * 16);
  EXPECT_EQ(q.bytes_per_vector(dim), 4u * 16 + 16);
  const auto x = normal_vectors(1, dim, 13);
  const auto bytes = q.encode(x.data(), 1, dim);
  for (size_t g = 0; g < 4; ++g) {
    double ss = 0;
    for (size_t j = g * 64; j < std::min(dim, g * 64 + 64); ++j) ss += double(x[j]) * x[j];
    float s;
    std::memcpy(&s, bytes.data() + q.codes_bytes(dim) + 4 * g, 4);
    EXPECT_NEAR(s, std::sqrt(ss), 1e-5 * std::sqrt(ss));
  }
}

TEST(Higgs, GridPointsAreTheirOwnNearest) {
  for (auto [p, npts] : available_grids()) {
    const EdenGrid& g = eden_grid(p, npts);
    for (int c = 0; c < g.size; ++c)
      ASSERT_EQ(g.nearest(g.point(c)), uint32_t(c)) << p << "-" << npts;
  }
}

TEST(Higgs, TiesGoToLowestIndex) {
  EdenGrid g;
  g.dim = 1;
  g.size = 3;
  g.points = {1.0f, -1.0f, 1.0f};
  g.half_norms = {0.5f, 0.5f, 0.5f};
  const float zero = 0.0f, one = 1.0f;
  EXPECT_EQ(g.nearest(&zero), 0u);
  EXPECT_EQ(g.nearest(&one), 0u);
}

// x on the grid times a scale: x = H(g * s) / h with g a vector of grid points. We reach such
// x from random vectors by iterating x <- decode(encode(x)) until the codes stop changing.
// Then encoding is exact: the codes are reproduced bit for bit, and the new scale is
// s' = ||x|| = s * ||g|| / sqrt(h) (DESIGN.md's s = ||x||_2 convention), so
// decode(encode(x)) = x * ||g|| / sqrt(h) to fp32 rounding, and = x whenever ||g|| = sqrt(h).
TEST(Higgs, RoundTripOnGridTimesScale) {
  const std::vector<std::tuple<int, int, int>> cases = {
      {4, 256, 128}, {2, 256, 64}, {8, 256, 1024}, {6, 4096, 128}, {16, 256, 256}};
  for (auto [p, npts, group] : cases) {
    HiggsQuantizer q(p, npts, group);
    const size_t n = 64, dim = size_t(group), rec = q.bytes_per_vector(dim);
    const size_t cb = q.codes_bytes(dim);
    auto x = normal_vectors(n, dim, 14);
    for (float& v : x) v *= 3.5f;
    const std::vector<uint8_t> codes = q.encode(x.data(), n, dim);
    int fixed = 0;
    for (size_t i = 0; i < n; ++i) {
      std::vector<uint8_t> ci(codes.begin() + i * rec, codes.begin() + (i + 1) * rec);
      std::vector<float> xi(dim), back(dim);
      for (int it = 0; it < 20; ++it) {
        q.decode(ci.data(), 1, dim, xi.data());
        const auto next = q.encode(xi.data(), 1, dim);
        const bool same = std::equal(next.begin(), next.begin() + cb, ci.begin());
        if (same) {
          ++fixed;
          float s_old, s_new;
          std::memcpy(&s_old, ci.data() + cb, 4);
          std::memcpy(&s_new, next.data() + cb, 4);
          double g2 = 0;  // ||g||^2 over the h values of the group
          const EdenGrid& grid = q.grid();
          for (int t = 0; t < q.tuples(); ++t) {
            const uint32_t c = npts <= 256 ? next[t] : (next[2 * t] | (next[2 * t + 1] << 8));
            for (int j = 0; j < p && t * p + j < group; ++j)
              g2 += double(grid.point(c)[j]) * grid.point(c)[j];
          }
          const double ratio = std::sqrt(g2 / group);
          EXPECT_NEAR(s_new / s_old, ratio, 1e-5) << q.spec();
          q.decode(next.data(), 1, dim, back.data());
          double norm = 0;
          for (float v : xi) norm = std::max(norm, double(std::fabs(v)));
          for (size_t j = 0; j < dim; ++j)
            ASSERT_NEAR(back[j], xi[j] * ratio, 4e-6 * norm) << q.spec();
          break;
        }
        ci = next;
      }
    }
    EXPECT_GE(fixed, int(n) * 9 / 10) << q.spec();
  }
}

TEST(Higgs, EncodingIsDeterministic) {
  HiggsQuantizer q(4, 256);
  const auto x = normal_vectors(500, 256, 15);
  const auto a = q.encode(x.data(), 500, 256), b = q.encode(x.data(), 500, 256);
  EXPECT_EQ(a, b);
  // Encoding a subset gives the same records: no dependence on batch or thread split.
  const auto c = q.encode(x.data() + 256 * 7, 3, 256);
  EXPECT_TRUE(std::equal(c.begin(), c.end(), a.begin() + 7 * q.bytes_per_vector(256)));
}

TEST(Higgs, ZeroVectorDecodesToZero) {
  HiggsQuantizer q(4, 256);
  std::vector<float> x(128, 0.0f), y(128, 1.0f);
  q.decode(q.encode(x.data(), 1, 128).data(), 1, 128, y.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(Higgs, RotatedScoreEqualsDotWithDecode) {
  const std::vector<std::tuple<int, int, int, size_t>> cases = {{4, 256, 128, 128},
                                                                {2, 256, 64, 200},
                                                                {6, 4096, 128, 128},
                                                                {2, 256, 1024, 1024},
                                                                {8, 256, 128, 256}};
  for (auto [p, npts, group, dim] : cases) {
    HiggsQuantizer q(p, npts, group);
    for (size_t n : {size_t(10), size_t(600)}) {  // direct path and lookup-table path
      const auto keys = normal_vectors(n, dim, 16);
      const auto query = normal_vectors(1, dim, 17);
      const auto codes = q.encode(keys.data(), n, dim);
      std::vector<float> dec(n * dim), scores(n);
      q.decode(codes.data(), n, dim, dec.data());
      const auto qrot = q.rotate_query(query.data(), dim);
      q.score(qrot.data(), codes.data(), n, dim, scores.data());
      for (size_t i = 0; i < n; ++i) {
        double ref = 0, mag = 0;
        for (size_t j = 0; j < dim; ++j) {
          ref += double(query[j]) * dec[i * dim + j];
          mag += std::fabs(double(query[j]) * dec[i * dim + j]);
        }
        ASSERT_NEAR(scores[i], ref, 1e-5 * mag + 1e-6) << q.spec() << " key " << i;
      }
    }
  }
}

TEST(Higgs, DecodeBf16AnyGroupSize) {
  for (int group : {64, 128, 512, 4096}) {
    HiggsQuantizer q(2, 64, group);
    const size_t dim = 4096 + 64, n = 3;
    const auto x = normal_vectors(n, dim, 18);
    const auto codes = q.encode(x.data(), n, dim);
    std::vector<float> f(n * dim);
    std::vector<uint16_t> b(n * dim);
    q.decode(codes.data(), n, dim, f.data());
    q.decode_bf16(codes.data(), n, dim, b.data());
    for (size_t i = 0; i < f.size(); ++i) ASSERT_EQ(b[i], float_to_bf16(f[i]));
  }
}

TEST(Higgs, BadParametersAndMissingGrid) {
  EXPECT_THROW(HiggsQuantizer(4, 256, 96), Error);
  EXPECT_THROW(HiggsQuantizer(4, 256, 8192), Error);
  try {
    HiggsQuantizer(3, 256);
    FAIL() << "no EDEN3-256 grid is shipped";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("EDEN3-256"), std::string::npos) << e.what();
  }
}

TEST(Higgs, GridDirOverride) {
  const std::string saved = grid_dir();
  set_grid_dir("/nonexistent-grid-dir");
  EXPECT_THROW(eden_grid(2, 16), Error);
  set_grid_dir(saved);
  EXPECT_EQ(eden_grid(2, 16).size, 16);
}

}  // namespace
}  // namespace kvo::quant
