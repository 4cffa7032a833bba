#include "quant/nearest_table.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>

namespace kvo::quant {
namespace {

constexpr float kRange = 4.0f;  // |y_j| >= 4 has probability 6e-5 per N(0,1) value
constexpr int kDominators = 24;

int bins_for(int p) {
  switch (p) {
    case 1:
      return 1024;
    case 2:
      return 128;
    case 3:
      return 40;
    default:
      return 20;  // p = 4: 160000 cells, ~12 candidates for the slowest lane of a warp
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
  t->bins = bins_for(p);
  t->range = kRange;
  const double width = 2.0 * kRange / t->bins;
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
  const double r = kRange + 1.0;
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
      lo[j] = -kRange + double(b) * width - slack;
      hi[j] = -kRange + double(b + 1) * width + slack;
    }
    lists[cell] = cell_candidates(g, lo, hi, sq_norm, margin);
  }
  t->offsets.resize(cells + 1, 0);
  for (size_t c = 0; c < cells; ++c) t->offsets[c + 1] = t->offsets[c] + uint32_t(lists[c].size());
  t->points.reserve(t->offsets.back());
  for (const auto& l : lists) t->points.insert(t->points.end(), l.begin(), l.end());
  return t;
}

}  // namespace

double NearestTable::mean_candidates() const {
  return double(points.size()) / double(offsets.size() - 1);
}

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
