#include "quant/grid.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>

#include "util/error.h"

namespace kvo::quant {
namespace {

std::mutex g_mutex;
std::string g_dir_override;
// Keyed by folder too and never cleared: quantizers keep references to their grid.
std::map<std::tuple<std::string, int, int>, EdenGrid> g_cache;

EdenGrid load_grid_file(const std::string& path, int p, int n) {
  std::ifstream in(path);
  check(in.good(),
        "HIGGS grid EDEN{}-{} not found at {} (set KVOFFLOAD_HIGGS_GRIDS or "
        "KVOFFLOAD_DATA_DIR)",
        p, n, path);
  EdenGrid g;
  g.dim = p;
  g.size = n;
  g.points.reserve(size_t(n) * p);
  std::string line;
  int row = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    float v;
    int cols = 0;
    while (ls >> v) {
      g.points.push_back(v);
      ++cols;
    }
    check(cols == p, "{}: line of point {} has {} values, expected {}", path, row, cols, p);
    ++row;
  }
  check(row == n, "{}: has {} points, expected {}", path, row, n);
  g.half_norms.resize(n);
  for (int c = 0; c < n; ++c) {
    float s = 0.0f;
    for (int j = 0; j < p; ++j)
      s = std::fma(g.points[size_t(c) * p + j], g.points[size_t(c) * p + j], s);
    g.half_norms[c] = 0.5f * s;
  }
  return g;
}

}  // namespace

uint32_t EdenGrid::nearest(const float* y) const {
  uint32_t best = 0;
  float best_d = INFINITY;
  for (int c = 0; c < size; ++c) {
    const float* pt = points.data() + size_t(c) * dim;
    float d = half_norms[c];
    for (int j = 0; j < dim; ++j) d = std::fma(-y[j], pt[j], d);
    if (d < best_d) {
      best_d = d;
      best = uint32_t(c);
    }
  }
  return best;
}

float EdenGrid::distance(const float* y, uint32_t code) const {
  const float* pt = point(code);
  float d = half_norms[code];
  for (int j = 0; j < dim; ++j) d = std::fma(-y[j], pt[j], d);
  return d;
}

void set_grid_dir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_dir_override = dir;
}

std::string grid_dir() {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_dir_override.empty()) return g_dir_override;
  }
  if (const char* d = std::getenv("KVOFFLOAD_HIGGS_GRIDS"); d && *d) return d;
  if (const char* d = std::getenv("KVOFFLOAD_DATA_DIR"); d && *d)
    return std::string(d) + "/higgs-grids";
  return std::string(KVO_SOURCE_DIR) + "/data/higgs-grids";
}

const EdenGrid& eden_grid(int p, int n) {
  const std::string dir = grid_dir();
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_cache.find({dir, p, n});
  if (it != g_cache.end()) return it->second;
  const std::string path = dir + "/EDEN" + std::to_string(p) + "-" + std::to_string(n) + ".txt";
  return g_cache.emplace(std::make_tuple(dir, p, n), load_grid_file(path, p, n)).first->second;
}

std::vector<std::pair<int, int>> available_grids() {
  namespace fs = std::filesystem;
  std::vector<std::pair<int, int>> out;
  const std::string dir = grid_dir();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    int p = 0, n = 0;
    const std::string name = e.path().filename().string();
    if (std::sscanf(name.c_str(), "EDEN%d-%d.txt", &p, &n) == 2) out.emplace_back(p, n);
  }
  check(!ec, "cannot list HIGGS grid folder {}: {}", dir, ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace kvo::quant
