// Quantizers on the GPU, for the CUDA KV-offloading policies: encode bf16 rows into the exact
// bytes the CPU quantizer writes, decode chosen records back to bf16 (also straight from mapped
// pinned host memory), and score HIGGS keys against queries without dequantizing them.
//
// Every call is asynchronous on `stream`: no host synchronization and no allocation, except
// a one-time upload of each grid's tables (and, for residual quantizers only, stream-ordered
// scratch from the device's default memory pool, kept cached by the pool). Only in builds with
// KVO_HAVE_CUDA. Pointers named d_* are device memory.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "quant/higgs.h"
#include "quant/quantizer.h"

namespace kvo::quant::cuda {

// Whether `q` has GPU kernels: higgs (tuple sizes d = 2, 4, 6, 8, 16), uniform, fp8, bf16,
// and residual whose meta and res quantizers are among those (not residual again).
bool device_supported(const Quantizer& q);

// Uploads the grid tables `q` needs to the current device (built on the CPU the first time:
// up to a second for d=4). Optional: the first encode/decode/score does it otherwise, and that
// upload synchronizes, so call this before capturing kernels into a CUDA graph.
void prepare(const Quantizer& q);

// x: (n, dim) bf16 bits on the device, rows x_stride elements apart -> d_out: the exact bytes
// q.encode_into(float(x), n, dim, out) writes on the CPU (q.encoded_bytes(n, dim) bytes).
void encode_bf16(const Quantizer& q, const uint16_t* d_x, int64_t x_stride, size_t n, size_t dim,
                 uint8_t* d_out, cudaStream_t stream);

// records: a block written by encode for n_records vectors of `dim`, in device memory OR in
// mapped pinned host memory (a UVA pointer: the kernel reads host memory over PCIe directly);
// d_rows: n record indices in device memory (nullptr = 0..n-1) -> d_out row i = decode(record
// rows[i]) as bf16 bits, rows out_stride elements apart. Equal to the CPU's decode_bf16.
void decode_rows_bf16(const Quantizer& q, const uint8_t* records, size_t n_records,
                      const int32_t* d_rows, size_t n, size_t dim, uint16_t* d_out,
                      int64_t out_stride, cudaStream_t stream);

// HIGGS only: scores in the rotated domain, never dequantizing the keys. d_q: (n_rows,
// num_q_heads * dim) bf16 queries (row stride q_stride elements); query (r, hq) scores KV head
// hq / group, whose keys are the block of q.encoded_bytes(n_keys, dim) bytes at
// d_keys + (hq / group) * q.encoded_bytes(n_keys, dim). d_scores: (n_rows * num_q_heads, n_keys)
// fp32, row r * num_q_heads + hq, = scale * dot(q, decode(key)).
// Records must hold one Hadamard group each (dim <= q.group(): per-head records, e.g. dim 128
// with group 128, or dim 1024 with group 1024); anything else throws kvo::Error.
void score_heads(const HiggsQuantizer& q, const uint16_t* d_q, int64_t q_stride, size_t n_rows,
                 int num_q_heads, int group, const uint8_t* d_keys, size_t n_keys, size_t dim,
                 float scale, float* d_scores, cudaStream_t stream);

}  // namespace kvo::quant::cuda
