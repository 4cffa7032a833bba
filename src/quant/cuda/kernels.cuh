// Launchers of the quantization kernels, one per family and job; device_quantizer.cu composes
// them (residual = meta + res). All are asynchronous on `stream`.
#pragma once
#include <cuda_runtime.h>

#include "quant/cuda/rows.cuh"
#include "quant/fp8.h"
#include "quant/higgs.h"
#include "quant/uniform.h"

namespace kvo::quant::cuda {

// n vectors of src.dim values -> record i at out.at(i).
void higgs_encode(const HiggsQuantizer& q, const SourceRows& src, size_t n, const RecordMap& out,
                  cudaStream_t stream);
void uniform_encode(const UniformQuantizer& q, const SourceRows& src, size_t n,
                    const RecordMap& out, cudaStream_t stream);
// fp8 (e4m3) or bf16 records: one value per element.
void elementwise_encode(bool fp8, const SourceRows& src, size_t n, const RecordMap& out,
                        cudaStream_t stream);

// Output row i (n rows of dst.dim values) = decode of record in.at(sel(i)).
void higgs_decode(const HiggsQuantizer& q, const ConstRecordMap& in, const RowSelect& sel, size_t n,
                  const DestRows& dst, cudaStream_t stream);
void uniform_decode(const UniformQuantizer& q, const ConstRecordMap& in, const RowSelect& sel,
                    size_t n, const DestRows& dst, cudaStream_t stream);
void elementwise_decode(bool fp8, const ConstRecordMap& in, const RowSelect& sel, size_t n,
                        const DestRows& dst, cudaStream_t stream);

// Residual encode step: means[b] = mean of vectors b*m .. b*m+m-1 (summed in double, as on the
// CPU), (ceil(n / m), dim) fp32.
void block_means(const SourceRows& src, size_t n, size_t m, float* means, cudaStream_t stream);

}  // namespace kvo::quant::cuda
