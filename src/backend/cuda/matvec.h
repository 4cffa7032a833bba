// Decode GEMMs of the CUDA backend (matvec.cu): out = x * w^T for a few rows of x, with the
// RMSNorm before a projection, the SwiGLU after gate/up and the residual add fused in.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kvo::cuda {

using bf16 = __nv_bfloat16;

// out = x * w^T (+ bias) for a few rows of x (decode): x [m, k] stride xs, w [n, k] stride ws,
// bias [n] or nullptr, out [m, n] stride os; m in 1..kMatvecRows, k (<= 2^33), xs, ws multiples of
// 8 and x, w 16-byte aligned (matvec_fits). One warp per output feature streams its weight row once
// with 16-byte loads, several in flight, and serves every row of x from cache: decode reads
// each weight once per step at close to the memory bandwidth.
// Up to kMatvecParts weights of one input (q, k, v) go in one launch. A part with w_up computes
// out = silu(x * w^T) * (x * w_up^T) instead (SwiGLU in the epilogue: one warp reads both rows
// of a feature), and has no bias.
// Two rows at most: from three rows on, cuBLAS's GEMMs with the norm, SwiGLU and residual add in
// kernels of their own are faster (H200, Llama-3.1-8B at 4K, tok/s with this kernel against
// cuBLAS: 2 rows 392 against 367, 3 rows 488 against 535, 4 rows 546 against 694, 8 rows 629
// against 1265; bench/RESULTS.md).
constexpr int kMatvecRows = 2;
constexpr int kMatvecParts = 3;
struct MatvecPart {
  const bf16* w = nullptr;  // [n, k] stride ws
  int64_t ws = 0;
  const bf16* bias = nullptr;  // [n] or nullptr
  bf16* out = nullptr;         // [m, n] stride os
  int64_t os = 0;
  int64_t n = 0;
  const bf16* w_up = nullptr;  // [n, k] stride ws, 16-byte aligned, or nullptr
};
// What matvec does around the products: with norm_w ([k], 16-byte aligned) the rows of x are
// rmsnorm(x) * norm_w (eps) on the fly, the norm of the residual stream before a projection
// (each weight times norm_w rounded to bf16, then the sum scaled by 1/rms in fp32);
// with accumulate the products are added onto out (a projection into the residual stream).
struct MatvecOptions {
  const bf16* norm_w = nullptr;
  float eps = 0.0f;
  bool accumulate = false;
};
bool matvec_fits(const bf16* x, int64_t xs, const bf16* w, int64_t ws, int64_t m, int64_t k);
void matvec(const bf16* x, int64_t xs, const MatvecPart* parts, int count, int64_t m, int64_t k,
            const MatvecOptions& options, cudaStream_t stream);

}  // namespace kvo::cuda
