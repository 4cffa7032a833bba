// How the quantization kernels address their inputs and outputs, so one kernel per job serves
// plain batches, strided bf16 rows, chosen rows, and the two halves of a residual layout.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "quant/scalar_codecs.h"

namespace kvo::quant::cuda {

// Encode input: value (i, j) = float(x[i * stride + j]) - minus[(i / minus_div) * dim + j]
// (minus: the decoded meta-vectors of a residual encode, else nullptr).
struct SourceRows {
  const void* x = nullptr;
  bool bf16 = true;  // else fp32
  int64_t stride = 0;
  size_t dim = 0;
  const float* minus = nullptr;
  size_t minus_div = 1;

  __device__ float at(size_t i, size_t j) const {
    const int64_t k = int64_t(i) * stride + int64_t(j);
    float v =
        bf16 ? bf16_to_float(static_cast<const uint16_t*>(x)[k]) : static_cast<const float*>(x)[k];
    if (minus) v = __fsub_rn(v, minus[(i / minus_div) * dim + j]);
    return v;
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
    return base + offset + (r / per) * outer + (r % per) * inner;
  }
};
using RecordMap = RecordMapOf<uint8_t>;
using ConstRecordMap = RecordMapOf<const uint8_t>;

// Decode output row i reads record (rows ? rows[i] : i) / div.
struct RowSelect {
  const int32_t* rows = nullptr;
  size_t div = 1;

  __device__ size_t operator()(size_t i) const { return (rows ? size_t(rows[i]) : i) / div; }
};

// Decoded value (i, j) goes to out[i * stride + j]: fp32, or bf16 of (v + add[i * dim + j])
// (add: the decoded meta-vectors of a residual decode, else nullptr).
struct DestRows {
  void* out = nullptr;
  bool bf16 = true;
  int64_t stride = 0;
  size_t dim = 0;
  const float* add = nullptr;

  __device__ void store(size_t i, size_t j, float v) const {
    const int64_t k = int64_t(i) * stride + int64_t(j);
    if (add) v = __fadd_rn(v, add[i * dim + j]);
    if (bf16)
      static_cast<uint16_t*>(out)[k] = float_to_bf16(v);
    else
      static_cast<float*>(out)[k] = v;
  }
};

}  // namespace kvo::quant::cuda
