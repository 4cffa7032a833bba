// Rank-r factorization of a key matrix for ShadowKV: A (n x w) ~ U' * Vt with U' = A * V_r
// (n x r) and Vt = V_r^T (r x w), V_r the top-r right singular vectors of A. U' = U * S of the
// truncated SVD, so U' * Vt is exactly the rank-r truncated SVD (the best rank-r approximation,
// Eckart-Young) and the bytes equal ShadowKV's U (n x r) plus S V^T (r x w).
//
// Method: the Gram matrix A^T A (w x w) is accumulated in double (BLAS dsyrk) and
// eigendecomposed with LAPACK dsyevd (OpenBLAS); V_r = eigenvectors of the r largest
// eigenvalues. Exact up to rounding (tests compare it with LAPACK's dgesdd on the same matrix);
// on a GPU the same algorithm maps to a GEMM and cuSOLVER syevd.
#pragma once
#include <cstdint>
#include <vector>

namespace kvo {

struct LowRank {
  int64_t rows = 0, cols = 0, rank = 0;
  std::vector<float> u;          // rows x rank, row-major (U * S)
  std::vector<float> vt;         // rank x cols, row-major (V^T)
  std::vector<double> singular;  // all min(rows, cols) singular values, descending
};

// a: rows x cols row-major. rank <= min(rows, cols).
LowRank low_rank_factorize(const float* a, int64_t rows, int64_t cols, int64_t rank);

}  // namespace kvo
