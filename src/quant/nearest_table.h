// Exact pruned nearest-point search for the EDEN grids (used by the CUDA HIGGS encoder, and
// checked against EdenGrid::nearest on the CPU).
//
// The cube [-range, range)^p is cut into bins^p cells. Each cell lists, in ascending index, every
// grid point that can be the nearest point (or tie with it) for some y in the cell: a point is
// left out only when another point is closer over the whole (slightly enlarged) cell by more
// than a margin that covers fp32 rounding of the ranking values. Searching the list with the
// canonical ranking of grid.h (same fmaf chain, strict <) therefore returns exactly the code of
// the full scan, ties to the lowest index included. y outside the cube (or NaN) scans all points.
// Only grids with p <= 4 get a table: above that, cells wide enough to keep the table small
// prune almost nothing.
#pragma once
#include <cstdint>
#include <vector>

#include "quant/grid.h"
#include "quant/scalar_codecs.h"

namespace kvo::quant {

struct NearestTable {
  int p = 0, bins = 0;
  float range = 0.0f, inv_width = 0.0f;  // cell of y_j: floor((y_j + range) * inv_width)
  std::vector<uint32_t> offsets;         // [bins^p + 1] into points
  std::vector<uint16_t> points;          // candidate lists, ascending per cell

  double mean_candidates() const;
};

// Built once per grid and cached for the process; nullptr when the grid gets no table (p > 4).
const NearestTable* nearest_table(const EdenGrid& g);

// Raw view of a table (host or device pointers); offsets == nullptr means "scan all points".
struct NearestTableView {
  const uint32_t* offsets = nullptr;
  const uint16_t* points = nullptr;
  int bins = 0;
  float range = 0.0f, inv_width = 0.0f;
};

// pt[0..P) = p[0..P): 16- or 8-byte loads on the GPU (grid points in shared memory are aligned
// to their size for P = 2, 4, 8, 16).
template <int P>
KVO_HD inline void load_point(const float* p, float (&pt)[P]) {
#ifdef __CUDA_ARCH__
  if constexpr (P % 4 == 0) {
    KVO_UNROLL
    for (int j = 0; j < P; j += 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + j);
      pt[j] = v.x;
      pt[j + 1] = v.y;
      pt[j + 2] = v.z;
      pt[j + 3] = v.w;
    }
  } else if constexpr (P == 2) {
    const float2 v = *reinterpret_cast<const float2*>(p);
    pt[0] = v.x;
    pt[1] = v.y;
  } else
#endif
  {
    for (int j = 0; j < P; ++j) pt[j] = p[j];
  }
}

// EdenGrid::nearest restricted to y's candidate list. pts: [npts, P], half_norms: [npts].
template <int P>
KVO_HD inline uint32_t nearest_pruned(const float* y, const float* pts, const float* half_norms,
                                      int npts, const NearestTableView& t) {
  uint32_t begin = 0, end = uint32_t(npts);
  bool listed = t.offsets != nullptr;
  if (listed) {
    uint32_t cell = 0, stride = 1;
    for (int j = 0; j < P; ++j) {
      const float u = (y[j] + t.range) * t.inv_width;
      if (!(u >= 0.0f && u < float(t.bins))) listed = false;  // outside the cube, or NaN
      const int b = listed ? int(u) : 0;
      cell += uint32_t(b < t.bins ? b : t.bins - 1) * stride;
      stride *= uint32_t(t.bins);
    }
    if (listed) {
      begin = t.offsets[cell];
      end = t.offsets[cell + 1];
    }
  }
  uint32_t best = 0;
  float best_d = INFINITY;
  // The next candidate's index is fetched one step ahead, hiding its load behind the distance.
  uint32_t next = begin < end ? (listed ? t.points[begin] : begin) : 0;
  for (uint32_t k = begin; k < end; ++k) {
    const uint32_t c = next;
    if (k + 1 < end) next = listed ? t.points[k + 1] : k + 1;
    float pt[P];
    load_point<P>(pts + c * P, pt);
    float d = half_norms[c];
    KVO_UNROLL
    for (int j = 0; j < P; ++j) d = fmaf(-y[j], pt[j], d);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

}  // namespace kvo::quant
