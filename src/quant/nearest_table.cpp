#include "quant/nearest_table.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>

#include "util/error.h"

namespace kvo::quant {
namespace {

constexpr int kDominators = 24;

// The table's cube [-range, range)^p and its bins per axis. A tuple outside the cube scans all
// points, and a warp waits for its slowest lane: on N(0,1) data the cubes leave ~1e-6 (p = 2,
// |y_j| >= 5) and ~2.5e-4 (p = 4, |y_j| >= 4) of the tuples out. p = 4 cells are fine enough
// that a list rarely needs a second chunk: a warp of 32 tuples runs 1.4 rounds of 8 candidates
// on average (2.2 with 20 bins; 28 bins make a 12 MB table).
struct Cube {
  float range;
  int bins;
};
Cube cube_for(int p) {
  switch (p) {
    case 1:
      return {4.0f, 1024};
    case 2:
      return {5.0f, 160};
    case 3:
      return {4.0f, 40};
    default:
      return {4.0f, 28};
  }
}

// Candidate list of one cell: the box [lo, hi] (already enlarged by the binning slack).
std::vector<uint16_t> cell_candidates(const EdenGrid& g, const double* lo, const double* hi,
                                      const std::vector<double>& sq_norm, double margin) {
  const int p = g.dim, n = g.size;
  std::vector<double> lower(n);
  double upper = INFINITY;  // min over points of the largest squared distance within the box
  for (int c = 0; c < n; ++c) {
    double l = 0.0, u = 0.0;
    for (int j = 0; j < p; ++j) {
      const double v = g.point(uint32_t(c))[j];
      const double below = lo[j] - v, above = v - hi[j];
      const double d = below > 0 ? below : above > 0 ? above : 0.0;
      l += d * d;
      u += std::max((lo[j] - v) * (lo[j] - v), (hi[j] - v) * (hi[j] - v));
    }
    lower[c] = l;
    upper = std::min(upper, u);
  }
  std::vector<int> alive;
  for (int c = 0; c < n; ++c)
    if (lower[c] <= upper + margin) alive.push_back(c);
  // The points nearest the centre dominate most others; test each survivor against them.
  std::vector<double> to_centre(n, 0.0);
  for (int c : alive)
    for (int j = 0; j < p; ++j) {
      const double d = 0.5 * (lo[j] + hi[j]) - g.point(uint32_t(c))[j];
      to_centre[c] += d * d;
    }
  std::vector<int> dominators(alive);
  const size_t k = std::min<size_t>(kDominators, dominators.size());
  std::partial_sort(dominators.begin(), dominators.begin() + k, dominators.end(),
                    [&](int a, int b) { return to_centre[a] < to_centre[b]; });
  dominators.resize(k);
  std::vector<uint16_t> out;
  for (int c : alive) {
    bool dominated = false;
    for (int o : dominators) {
      if (o == c) continue;
      // min over the box of ||y - c||^2 - ||y - o||^2, a linear function of y.
      double m = sq_norm[c] - sq_norm[o];
      for (int j = 0; j < p; ++j) {
        const double delta = 2.0 * (double(g.point(uint32_t(o))[j]) - g.point(uint32_t(c))[j]);
        m += std::min(lo[j] * delta, hi[j] * delta);
      }
      if (m > margin) {
        dominated = true;
        break;
      }
    }
    if (!dominated) out.push_back(uint16_t(c));
  }
  return out;
}

std::unique_ptr<NearestTable> build_table(const EdenGrid& g) {
  auto t = std::make_unique<NearestTable>();
  const int p = g.dim;
  t->p = p;
  const Cube cube = cube_for(p);
  t->bins = cube.bins;
  t->range = cube.range;
  const double width = 2.0 * cube.range / t->bins;
  t->inv_width = float(1.0 / width);
  std::vector<double> sq_norm(g.size, 0.0);
  double max_coord = 0.0;
  for (int c = 0; c < g.size; ++c)
    for (int j = 0; j < p; ++j) {
      const double v = g.point(uint32_t(c))[j];
      sq_norm[c] += v * v;
      max_coord = std::max(max_coord, std::fabs(v));
    }
  // fp32 ranking error of two points (fmaf chain of p steps on values below these bounds),
  // with a 4x safety factor, in squared-distance units.
  const double r = cube.range + 1.0;
  const double margin =
      32.0 * (p + 1) * std::ldexp(1.0, -24) * (p * max_coord * max_coord / 2 + p * r * max_coord);
  const double slack = 1e-4;  // a y on a cell border may be binned to either side
  size_t cells = 1;
  for (int j = 0; j < p; ++j) cells *= size_t(t->bins);
  std::vector<std::vector<uint16_t>> lists(cells);
#pragma omp parallel for schedule(dynamic, 64)
  for (long long cell = 0; cell < (long long)cells; ++cell) {
    double lo[4], hi[4];
    size_t rest = size_t(cell);
    for (int j = 0; j < p; ++j) {
      const size_t b = rest % size_t(t->bins);
      rest /= size_t(t->bins);
      lo[j] = -cube.range + double(b) * width - slack;
      hi[j] = -cube.range + double(b + 1) * width + slack;
    }
    lists[cell] = cell_candidates(g, lo, hi, sq_norm, margin);
  }
  const int C = chunk_entries(p);
  t->cells.resize(cells);
  for (size_t c = 0; c < cells; ++c) {
    const auto& l = lists[c];
    const size_t first = t->points.size() / size_t(C), chunks = (l.size() + C - 1) / size_t(C);
    check(!l.empty() && first < (size_t(1) << 24) && chunks < 256,
          "nearest table of EDEN{}-{}: cell lists beyond the packed chunk range", p, g.size);
    t->cells[c] = uint32_t(first << 8 | chunks);
    t->points.insert(t->points.end(), l.begin(), l.end());
    t->points.resize(size_t(C) * (first + chunks), l.back());
    t->candidates += l.size();
  }
  return t;
}

}  // namespace

const NearestTable* nearest_table(const EdenGrid& g) {
  if (g.dim > 4 || g.size > 65536) return nullptr;
  static std::mutex mu;
  static std::map<const EdenGrid*, std::unique_ptr<NearestTable>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[&g];
  if (!slot) slot = build_table(g);
  return slot.get();
}

}  // namespace kvo::quant
