// The pruned nearest-point search (nearest_table.h) against the full scan of EdenGrid::nearest,
// on the cases that stress it: cell borders, grid points, exact midpoints (ties), outside the
// table's cube, NaN.
#include "quant/nearest_table.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "quant/grid.h"

namespace kvo::quant {
namespace {

// Tuples [count, p] that probe every way the pruning could go wrong.
std::vector<float> probe_tuples(const EdenGrid& g, const NearestTable& t, size_t count) {
  const int p = g.dim;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> point(0, g.size - 1), bin(0, t.bins);
  std::vector<float> y;
  for (size_t i = 0; i < count; ++i) {
    const int kind = int(i % 6);
    const int a = point(rng), b = point(rng);
    for (int j = 0; j < p; ++j) {
      float v = normal(rng);
      if (kind == 1) v = -t.range + float(bin(rng)) / t.inv_width;  // on a cell border
      if (kind == 2) v = std::nextafter(-t.range + float(bin(rng)) / t.inv_width, 0.0f);
      if (kind == 3) v = g.point(uint32_t(a))[j];                                     // a point
      if (kind == 4) v = 0.5f * (g.point(uint32_t(a))[j] + g.point(uint32_t(b))[j]);  // a tie
      if (kind == 5) v = 3.0f * normal(rng);  // often outside the cube
      y.push_back(v);
    }
  }
  for (int j = 0; j < p; ++j) y.push_back(j == 0 ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
  return y;
}

// Searched U tuples at a time (the last group wraps around to the first tuples).
template <int P, int U>
size_t mismatches(const EdenGrid& g, const NearestTable& t, const std::vector<float>& y) {
  const NearestTableView view{t.cells.data(), t.points.data(), t.bins, t.range, t.inv_width};
  const size_t n = y.size() / P;
  size_t bad = 0;
  for (size_t i = 0; i < n; i += U) {
    float tuples[U * P];
    for (int u = 0; u < U; ++u)
      for (int j = 0; j < P; ++j) tuples[u * P + j] = y[(i + u) % n * P + j];
    uint32_t code[U];
    nearest_pruned<P, U>(tuples, g.points.data(), g.half_norms.data(), g.size, view, code);
    for (int u = 0; u < U; ++u) bad += code[u] != g.nearest(&tuples[u * P]);
  }
  return bad;
}

TEST(NearestTable, PrunedSearchEqualsFullScan) {
  for (auto [p, n] :
       std::vector<std::pair<int, int>>{{2, 16}, {2, 64}, {2, 256}, {4, 16}, {4, 256}}) {
    const EdenGrid& g = eden_grid(p, n);
    const NearestTable* t = nearest_table(g);
    ASSERT_NE(t, nullptr) << p << "-" << n;
    const auto y = probe_tuples(g, *t, 60000);
    const size_t bad = p == 2 ? mismatches<2, 1>(g, *t, y) : mismatches<4, 1>(g, *t, y);
    EXPECT_EQ(bad, 0u) << "EDEN" << p << "-" << n;
    // Two searches interleaved, as the CUDA encoder runs them for d=2.
    const size_t bad2 = p == 2 ? mismatches<2, 2>(g, *t, y) : mismatches<4, 2>(g, *t, y);
    EXPECT_EQ(bad2, 0u) << "EDEN" << p << "-" << n << ", two tuples per search";
    std::printf("[ EDEN%d-%d ] %d^%d cells, %.1f candidates per cell (of %d points)\n", p, n,
                t->bins, p, t->mean_candidates(), n);
    // The point of the table: a small fraction of the grid per search.
    EXPECT_LT(t->mean_candidates(), 0.25 * n) << "EDEN" << p << "-" << n;
  }
}

TEST(NearestTable, NoTableAboveFourDimensions) {
  EXPECT_EQ(nearest_table(eden_grid(8, 256)), nullptr);
  EXPECT_EQ(nearest_table(eden_grid(6, 4096)), nullptr);
}

}  // namespace
}  // namespace kvo::quant
