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
//
// Lists are stored in whole chunks of chunk_entries(p) indices (8 or 16 bytes), so that a GPU
// lane fetches a chunk with one vector load rather than one load per index: the lanes of a
// warp read different cells, so each such load costs the L1 a pass per lane (the chunks gave
// the H200 encoder +11% for d=4, +21% for d=2). A list's last chunk is filled up with its last
// candidate, which the search then ranks again without effect (strict <).
#pragma once
#include <cstdint>
#include <vector>

#include "quant/grid.h"
#include "quant/scalar_codecs.h"

namespace kvo::quant {

// EDEN2 cells list <= 4 points, EDEN4 ones ~12 at most on N(0,1) data; the full scans of
// larger tuples (no table) rank two points per round, more would not fit in registers.
constexpr int chunk_entries(int p) {
  return p == 2 ? 4 : p <= 4 ? 8 : 2;
}

struct NearestTable {
  int p = 0, bins = 0;
  float range = 0.0f, inv_width = 0.0f;  // cell of y_j: floor((y_j + range) * inv_width)
  std::vector<uint32_t> cells;           // [bins^p]: first chunk << 8 | chunks of the list
  std::vector<uint16_t> points;          // [chunks, chunk_entries(p)] lists, ascending per cell
  size_t candidates = 0;                 // list entries, the fill of last chunks not counted

  double mean_candidates() const { return double(candidates) / double(cells.size()); }
};

// Built once per grid and cached for the process; nullptr when the grid gets no table (p > 4).
const NearestTable* nearest_table(const EdenGrid& g);

// Raw view of a table (host or device pointers); cells == nullptr means "scan all points".
struct NearestTableView {
  const uint32_t* cells = nullptr;
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

// Chunk i of the candidate lists, C indices: one 8- or 16-byte load on the GPU.
template <int C>
KVO_HD inline void load_chunk(const uint16_t* points, uint32_t i, uint32_t (&c)[C]) {
  const auto scalar = [&] {
    for (int b = 0; b < C; ++b) c[b] = points[size_t(i) * C + b];
  };
#ifdef __CUDA_ARCH__
  if constexpr (C == 8 || C == 4) {
    uint32_t w[C / 2];
    if constexpr (C == 8) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(points) + i);
      w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    } else {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(points) + i);
      w[0] = v.x, w[1] = v.y;
    }
    KVO_UNROLL
    for (int b = 0; b < C; ++b) c[b] = (w[b / 2] >> (16 * (b % 2))) & 0xffffu;
  } else {
    scalar();
  }
#else
  scalar();
#endif
}

// One step of the canonical ranking (grid.h): point c becomes the best when its value is
// strictly lower, so of equal values the first ranked stays.
template <int P>
KVO_HD inline void rank_point(const float* y, const float* pts, const float* half_norms, uint32_t c,
                              float& best_d, uint32_t& best) {
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

// EdenGrid::nearest of U tuples at once, each restricted to its candidate list: code[u] for
// y[u*P .. u*P+P). The U searches run in the same rounds of one chunk each, so their table
// loads overlap. pts: [npts, P], half_norms: [npts].
template <int P, int U>
KVO_HD inline void nearest_pruned(const float* y, const float* pts, const float* half_norms,
                                  int npts, const NearestTableView& t, uint32_t* code) {
  constexpr int C = chunk_entries(P);
  uint32_t cell[U], first[U], chunks[U];
  bool listed[U];
  KVO_UNROLL
  for (int u = 0; u < U; ++u) {
    listed[u] = t.cells != nullptr;
    cell[u] = 0;
    uint32_t stride = 1;
    for (int j = 0; j < P; ++j) {
      const float v = (y[u * P + j] + t.range) * t.inv_width;
      if (!(v >= 0.0f && v < float(t.bins))) listed[u] = false;  // outside the cube, or NaN
      const int b = listed[u] ? int(v) : 0;
      cell[u] += uint32_t(b < t.bins ? b : t.bins - 1) * stride;
      stride *= uint32_t(t.bins);
    }
  }
  float best_d[U];
  KVO_UNROLL
  for (int u = 0; u < U; ++u) {
    const uint32_t w = listed[u] ? t.cells[cell[u]] : 0u;
    first[u] = w >> 8;
    chunks[u] = listed[u] ? w & 0xffu : uint32_t(npts + C - 1) / C;
    code[u] = 0;
    best_d[u] = INFINITY;
  }
  for (uint32_t r = 0;; ++r) {
    uint32_t c[U][C];
    bool more = false;
    KVO_UNROLL
    for (int u = 0; u < U; ++u) {
      if (r < chunks[u]) {
        if (listed[u]) {
          load_chunk<C>(t.points, first[u] + r, c[u]);
        } else {  // the full scan in chunks too, the last one filled up with the last point
          KVO_UNROLL
          for (int b = 0; b < C; ++b) {
            const uint32_t k = r * C + b;
            c[u][b] = k < uint32_t(npts) ? k : uint32_t(npts - 1);
          }
        }
      }
      more = more || r + 1 < chunks[u];
    }
    // Ascending list order and strict < keep the full scan's tie rule (lowest index).
    KVO_UNROLL
    for (int u = 0; u < U; ++u) {
      if (r >= chunks[u]) continue;
      KVO_UNROLL
      for (int b = 0; b < C; ++b)
        rank_point<P>(y + u * P, pts, half_norms, c[u][b], best_d[u], code[u]);
    }
    if (!more) break;
  }
}

}  // namespace kvo::quant
