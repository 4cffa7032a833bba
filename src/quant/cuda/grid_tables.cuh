// Device copies of an EDEN grid and its nearest-point table (quant/nearest_table.h), uploaded
// once per grid and device and kept for the process (grids are never unloaded either).
#pragma once
#include "quant/grid.h"
#include "quant/nearest_table.h"

namespace kvo::quant::cuda {

struct DeviceGrid {
  const float* points = nullptr;      // [npts, p]
  const float* half_norms = nullptr;  // [npts]
  NearestTableView table;             // cells == nullptr: no table, scan all points
};

// The first call for a grid on the current device uploads it (synchronously, once).
const DeviceGrid& device_grid(const EdenGrid& g);

}  // namespace kvo::quant::cuda
