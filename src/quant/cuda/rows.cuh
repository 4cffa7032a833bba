// How the quantization kernels address their inputs and outputs, so one kernel per job serves
// plain batches, strided bf16 rows, chosen rows, and the two halves of a residual layout.
// Divisions are avoided on the common paths (64-bit integer division costs ~70 instructions).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "quant/cuda/launch.cuh"
#include "quant/scalar_codecs.h"

namespace kvo::quant::cuda {

// One encode input row: value j = float(x[j]) - minus[j] (minus: a decoded residual meta-vector).
struct SourceRow {
  const void* x;
  bool bf16;
  const float* minus;

  __device__ float at(size_t j) const {
    const float v =
        bf16 ? bf16_to_float(static_cast<const uint16_t*>(x)[j]) : static_cast<const float*>(x)[j];
    return minus ? __fsub_rn(v, minus[j]) : v;
  }
  // v[k] = at(j + k) for j + k < dim, else 0; one vector load for aligned plain bf16 rows.
  template <int E>
  __device__ void load(size_t j, size_t dim, float (&v)[E]) const {
    static_assert(E == 2 || E == 4 || E == 8);
    const uint16_t* p = static_cast<const uint16_t*>(x) + j;
    if (bf16 && !minus && j + E <= dim && reinterpret_cast<uintptr_t>(p) % (2 * E) == 0) {
      uint32_t w[4];
      if constexpr (E == 8) {
        const uint4 u = *reinterpret_cast<const uint4*>(p);
        w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
      } else if constexpr (E == 4) {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
        w[0] = u.x, w[1] = u.y;
      } else {
        w[0] = *reinterpret_cast<const uint32_t*>(p);
      }
#pragma unroll
      for (int k = 0; k < E; ++k) v[k] = bf16_to_float(uint16_t(w[k / 2] >> (16 * (k % 2))));
      return;
    }
#pragma unroll
    for (int k = 0; k < E; ++k) v[k] = j + k < dim ? at(j + k) : 0.0f;
  }
};

// Encode input: row i = x + i * stride (bf16 or fp32), minus row (i / minus_div) * dim.
struct SourceRows {
  const void* x = nullptr;
  bool bf16 = true;  // else fp32
  int64_t stride = 0;
  size_t dim = 0;
  const float* minus = nullptr;
  size_t minus_div = 1;

  __device__ SourceRow row(size_t i) const {
    const int64_t k = int64_t(i) * stride;
    const void* r = bf16 ? static_cast<const void*>(static_cast<const uint16_t*>(x) + k)
                         : static_cast<const void*>(static_cast<const float*>(x) + k);
    return {r, bf16, minus ? minus + (i / minus_div) * dim : nullptr};
  }
};

// Record r lives at base + offset + (r / per) * outer + (r % per) * inner: a plain batch is
// {base, 0, 1, rec, 0}; a residual layout is meta {base, 0, 1, block, 0} and residuals
// {base, meta_rec, m, block, res_rec}.
template <typename Byte>
struct RecordMapOf {
  Byte* base = nullptr;
  size_t offset = 0, per = 1, outer = 0, inner = 0;

  __host__ __device__ Byte* at(size_t r) const {
    if (per == 1) return base + offset + r * outer;
    return base + offset + (r / per) * outer + (r % per) * inner;
  }
};
using RecordMap = RecordMapOf<uint8_t>;
using ConstRecordMap = RecordMapOf<const uint8_t>;

// Decode output row i reads record (rows ? rows[i] : i) / div.
struct RowSelect {
  const int32_t* rows = nullptr;
  size_t div = 1;

  __device__ size_t operator()(size_t i) const {
    const size_t r = rows ? size_t(rows[i]) : i;
    return div == 1 ? r : r / div;
  }
};

// One decode output row: value j goes to out[j] as fp32, or as bf16 of (v + add[j]) (add: the
// decoded residual meta-vector of the row).
struct DestRow {
  void* out;
  bool bf16;
  const float* add;

  __device__ void store(size_t j, float v) const {
    if (add) v = __fadd_rn(v, add[j]);
    if (bf16)
      static_cast<uint16_t*>(out)[j] = float_to_bf16(v);
    else
      static_cast<float*>(out)[j] = v;
  }
  // store(j + k, v[k]) for j + k < dim; one vector store for aligned plain bf16 rows.
  template <int E>
  __device__ void store(size_t j, size_t dim, const float (&v)[E]) const {
    static_assert(E == 2 || E == 4 || E == 8);
    uint16_t* p = static_cast<uint16_t*>(out) + j;
    if (bf16 && !add && j + E <= dim && reinterpret_cast<uintptr_t>(p) % (2 * E) == 0) {
      uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
      for (int k = 0; k < E; ++k) w[k / 2] |= uint32_t(float_to_bf16(v[k])) << (16 * (k % 2));
      if constexpr (E == 8)
        *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
      else if constexpr (E == 4)
        *reinterpret_cast<uint2*>(p) = make_uint2(w[0], w[1]);
      else
        *reinterpret_cast<uint32_t*>(p) = w[0];
      return;
    }
#pragma unroll
    for (int k = 0; k < E; ++k)
      if (j + k < dim) store(j + k, v[k]);
  }
};

// Decode output: row i = out + i * stride, add row i * dim.
struct DestRows {
  void* out = nullptr;
  bool bf16 = true;
  int64_t stride = 0;
  size_t dim = 0;
  const float* add = nullptr;

  __device__ DestRow row(size_t i) const {
    const int64_t k = int64_t(i) * stride;
    void* r = bf16 ? static_cast<void*>(static_cast<uint16_t*>(out) + k)
                   : static_cast<void*>(static_cast<float*>(out) + k);
    return {r, bf16, add ? add + i * dim : nullptr};
  }
};

// t / d for a thread's flat index: a 32-bit division (~20 instructions) whenever t fits.
__device__ __forceinline__ size_t div_index(size_t t, uint32_t d) {
  return t <= 0xffffffffu ? size_t(uint32_t(t) / d) : t / d;
}

// (vector, group) of a task index without dividing in the one-group case.
__device__ __forceinline__ void split_task(size_t task, int groups, size_t& i, int& g) {
  if (groups == 1) {
    i = task;
    g = 0;
  } else {
    i = task / size_t(groups);
    g = int(task - i * size_t(groups));
  }
}

// f(i, g) for each (vector i, group g) of n vectors of `groups` groups that this warp takes: the
// warp-per-task grid-stride loop of the encode and decode kernels.
template <typename F>
__device__ __forceinline__ void for_each_warp_task(size_t n, int groups, F&& f) {
  const size_t tasks = n * size_t(groups);
  for (size_t task = grid_warp(); task < tasks; task += grid_warps()) {
    size_t i;
    int g;
    split_task(task, groups, i, g);
    f(i, g);
  }
}

}  // namespace kvo::quant::cuda
