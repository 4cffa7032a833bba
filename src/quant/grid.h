// EDEN vector-quantization grids for HIGGS (DESIGN.md §4), loaded from the files the project
// ships in data/higgs-grids/EDEN{p}-{n}.txt. Codes index the file's point order, so the files
// are data, never regenerated.
//
// Folder lookup, first hit wins: set_grid_dir(), $KVOFFLOAD_HIGGS_GRIDS (the grid folder
// itself), $KVOFFLOAD_DATA_DIR/higgs-grids, KVO_SOURCE_DIR/data/higgs-grids (compiled in).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvo::quant {

struct EdenGrid {
  int dim = 0;                    // p: values per tuple
  int size = 0;                   // n: points
  std::vector<float> points;      // [n, p] row-major, file order
  std::vector<float> half_norms;  // [n] ||c||^2 / 2, accumulated with fma in j order

  const float* point(uint32_t code) const { return points.data() + size_t(code) * dim; }
  // Index of the nearest point to y[0..p), ties to the lowest index. Points are ranked by
  // ||y - c||^2 / 2 - ||y||^2 / 2 = ||c||^2 / 2 - y.c (same order, p FMAs per point), computed
  // as d = half_norms[c]; d = fma(-y_j, c_j, d) for j = 0..p-1, exactly as the CUDA encoder
  // does, so both pick the same code for the same y.
  uint32_t nearest(const float* y) const;
  // That canonical ranking value of one point (for tie analysis).
  float distance(const float* y, uint32_t code) const;
};

void set_grid_dir(const std::string& dir);
std::string grid_dir();
// Loads (once, cached for the process) the grid EDEN{p}-{n}.txt; throws kvo::Error when absent.
const EdenGrid& eden_grid(int p, int n);
// The (p, n) pairs of the EDEN*.txt files present in grid_dir(), sorted.
std::vector<std::pair<int, int>> available_grids();

}  // namespace kvo::quant
