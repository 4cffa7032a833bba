#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "quant/cuda/grid_tables.cuh"
#include "quant/cuda/launch.cuh"

namespace kvo::quant::cuda {
namespace {

template <typename T>
T* upload(const std::vector<T>& v) {
  T* d = nullptr;
  KVO_CUDA_CHECK(cudaMalloc(&d, std::max<size_t>(1, v.size()) * sizeof(T)));
  KVO_CUDA_CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

}  // namespace

const DeviceGrid& device_grid(const EdenGrid& g) {
  static std::mutex mu;
  static std::map<std::pair<const EdenGrid*, int>, DeviceGrid> cache;
  int dev = 0;
  KVO_CUDA_CHECK(cudaGetDevice(&dev));
  // Built outside the lock: the table takes a moment for p = 4 and is cached by itself.
  const NearestTable* table = nearest_table(g);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({&g, dev});
  if (it != cache.end()) return it->second;
  DeviceGrid d;
  d.points = upload(g.points);
  d.half_norms = upload(g.half_norms);
  if (table) {
    d.table.cells = upload(table->cells);
    d.table.points = upload(table->points);
    d.table.bins = table->bins;
    d.table.range = table->range;
    d.table.inv_width = table->inv_width;
  }
  return cache.emplace(std::make_pair(&g, dev), d).first->second;
}

}  // namespace kvo::quant::cuda
