// Element-wise and row-wise kernels of the CUDA backend (kernels.cu). All activations and weights
// are bf16, row-major 2-D views with a row stride in elements; arithmetic is fp32 and each result
// is rounded to bf16 once. Every launcher is asynchronous on `stream`; the ops of a decode step
// launch overlapped with the kernel before them (overlap.h).
//
// Shape contract (FlashInfer style: [rows, cols], stride = elements between row starts):
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/seq_tables.h"

namespace kvo::cuda {

using bf16 = __nv_bfloat16;

// dst[n] (bf16, contiguous) = src[n] converted; src_dtype: 0 = f32, 1 = f16, 2 = bf16.
void convert_to_bf16(const void* src, int src_dtype, bf16* dst, int64_t n, cudaStream_t stream);

// out[t, :cols] = table[ids[t], :cols]; ids: [n] int32 on the device (validated by the caller),
// table: [vocab, cols] stride ts, out: [n, cols] stride os.
void embedding(const int32_t* ids, int64_t n, const bf16* table, int64_t ts, int64_t cols,
               bf16* out, int64_t os, cudaStream_t stream);

// out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w[:]; x: [rows, cols] stride xs,
// w: [cols], out: [rows, cols] stride os. out may alias x (Qwen3 q/k-norm runs in place on the
// (tokens * heads, head_dim) view). One warp per row.
void rmsnorm(const bf16* x, int64_t xs, const bf16* w, float eps, bf16* out, int64_t os,
             int64_t rows, int64_t cols, cudaStream_t stream);

// In-place RoPE on x: [rows, heads * head_dim] stride xs; positions: [rows] int32 (device);
// inv_freq: [head_dim / 2] fp32 (device). Pair i of a head is (i, i + head_dim/2), or
// (2i, 2i+1) with adjacent_pairs. Angles are fp32 pos * inv_freq[i] with precise sincosf,
// like the CPU reference.
void rope(bf16* x, int64_t xs, int64_t rows, int64_t heads, int head_dim, const int32_t* positions,
          const float* inv_freq, bool adjacent_pairs, cudaStream_t stream);

// The decode step's RoPE and KV append (Backend::rope_store_at): q [rows, q_heads * head_dim]
// stride qs is rotated in place as by rope; row r of k [rows, kv_heads * head_dim] stride ks,
// rotated, goes to row positions[r] of keys (stride keys_s), and row r of v (stride vs) to row
// positions[r] of values (stride values_s). k is not written. head_dim even: one thread per
// rotation pair, and v is copied by the same pairs. With seqs (rows == seqs->count, <=
// kMaxSeqs), row r goes to seqs->keys[r] / seqs->values[r] instead (keys, values unused).
void rope_store(bf16* q, int64_t qs, int64_t q_heads, const bf16* k, int64_t ks, const bf16* v,
                int64_t vs, int64_t kv_heads, bf16* keys, int64_t keys_s, bf16* values,
                int64_t values_s, int64_t rows, int head_dim, const int32_t* positions,
                const float* inv_freq, bool adjacent_pairs, cudaStream_t stream,
                const SeqTables* seqs = nullptr);

// out = silu(gate) * up; all [rows, cols] with their own strides; out may alias gate or up.
void swiglu(const bf16* gate, int64_t gs, const bf16* up, int64_t us, bf16* out, int64_t os,
            int64_t rows, int64_t cols, cudaStream_t stream);

// x += y; both [rows, cols] with their own strides.
void add(bf16* x, int64_t xs, const bf16* y, int64_t ys, int64_t rows, int64_t cols,
         cudaStream_t stream);

// out[r, :] = bias[:] for every row (the GEMM then accumulates x * w^T onto it with beta = 1,
// so the bias is added in fp32 inside cuBLAS' epilogue). out: [rows, cols] stride os.
void broadcast_rows(const bf16* bias, bf16* out, int64_t os, int64_t rows, int64_t cols,
                    cudaStream_t stream);

// dst rows [*first, *first + rows) = src rows; both [., cols] with their own strides; `first`
// is one int32 in device memory, read when the kernel runs.
void copy_rows_at(const bf16* src, int64_t ss, bf16* dst, int64_t ds, int64_t rows, int64_t cols,
                  const int32_t* first, cudaStream_t stream);

// out[b] = sum of the 16-byte words of data[bytes] in block b: a plain streaming read, the
// bandwidth yardstick of the decode roofline. bytes % 16 == 0; out has `blocks` entries.
void read_sum(const void* data, int64_t bytes, unsigned blocks, uint32_t* out, cudaStream_t stream);

}  // namespace kvo::cuda
