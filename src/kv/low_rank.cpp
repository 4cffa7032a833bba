#include "kv/low_rank.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "util/error.h"

extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda,
                        double* w, double* work, const int* lwork, int* iwork, const int* liwork,
                        int* info);

namespace kvo {

LowRank low_rank_factorize(const float* a, int64_t rows, int64_t cols, int64_t rank) {
  check(rank >= 1 && rank <= std::min(rows, cols), "internal: rank {} for a {}x{} matrix", rank,
        rows, cols);
  const int n = int(cols);
  std::vector<double> ad(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < ad.size(); ++i) ad[i] = a[i];
  std::vector<double> gram(static_cast<size_t>(cols * cols), 0.0);
  // Upper triangle (column-major view of the row-major result is the transpose, symmetric).
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, int(rows), 1.0, ad.data(), n, 0.0,
              gram.data(), n);
  ad.clear();
  ad.shrink_to_fit();
  // Row-major upper == column-major lower.
  std::vector<double> eig(static_cast<size_t>(cols));
  int info = 0, lwork = -1, liwork = -1, iwork_q = 0;
  double work_q = 0;
  const char jobz = 'V', uplo = 'L';
  dsyevd_(&jobz, &uplo, &n, gram.data(), &n, eig.data(), &work_q, &lwork, &iwork_q, &liwork, &info);
  lwork = int(work_q);
  liwork = iwork_q;
  std::vector<double> work(static_cast<size_t>(std::max(1, lwork)));
  std::vector<int> iwork(static_cast<size_t>(std::max(1, liwork)));
  dsyevd_(&jobz, &uplo, &n, gram.data(), &n, eig.data(), work.data(), &lwork, iwork.data(), &liwork,
          &info);
  check(info == 0, "SVD of the keys failed (LAPACK dsyevd info {})", info);
  // Column-major eigenvectors: eigenvector j = gram[j * n .. j * n + n), ascending eigenvalues.
  LowRank lr;
  lr.rows = rows;
  lr.cols = cols;
  lr.rank = rank;
  const int64_t kmin = std::min(rows, cols);
  for (int64_t j = 0; j < kmin; ++j)
    lr.singular.push_back(std::sqrt(std::max(0.0, eig[n - 1 - j])));
  lr.vt.resize(size_t(rank * cols));
  for (int64_t r = 0; r < rank; ++r) {
    const double* vec = gram.data() + size_t(n - 1 - r) * n;
    for (int64_t c = 0; c < cols; ++c) lr.vt[r * cols + c] = float(vec[c]);
  }
  lr.u.resize(size_t(rows * rank));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(rank), int(cols), 1.0f, a,
              int(cols), lr.vt.data(), int(cols), 0.0f, lr.u.data(), int(rank));
  return lr;
}

}  // namespace kvo
