// The ShadowKV key factorization against LAPACK's exact SVD (dgesdd) on the same matrix.
#include "kv/low_rank.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

extern "C" void dgesdd_(const char* jobz, const int* m, const int* n, double* a, const int* lda,
                        double* s, double* u, const int* ldu, double* vt, const int* ldvt,
                        double* work, const int* lwork, int* iwork, int* info);

namespace kvo {
namespace {

std::vector<double> exact_singular_values(const std::vector<float>& a, int rows, int cols) {
  // Column-major copy of the row-major matrix.
  std::vector<double> cm(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) cm[size_t(c) * rows + r] = a[size_t(r) * cols + c];
  const int k = std::min(rows, cols);
  std::vector<double> s(static_cast<size_t>(k));
  std::vector<int> iwork(static_cast<size_t>(8 * k));
  int info = 0, lwork = -1, one = 1;
  double wq = 0, dummy = 0;
  const char jobz = 'N';
  dgesdd_(&jobz, &rows, &cols, cm.data(), &rows, s.data(), &dummy, &one, &dummy, &one, &wq, &lwork,
          iwork.data(), &info);
  lwork = int(wq);
  std::vector<double> work(static_cast<size_t>(lwork));
  dgesdd_(&jobz, &rows, &cols, cm.data(), &rows, s.data(), &dummy, &one, &dummy, &one, work.data(),
          &lwork, iwork.data(), &info);
  EXPECT_EQ(info, 0);
  return s;
}

TEST(LowRank, MatchesExactSvdAndIsTheBestRankRApproximation) {
  const int rows = 300, cols = 64;
  std::mt19937 rng(7);
  std::normal_distribution<float> n01;
  // Keys-like: a decaying spectrum plus noise.
  std::vector<float> a(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) a[size_t(r) * cols + c] = n01(rng) * std::exp(-0.08f * c) + 0.5f;
  const std::vector<double> exact = exact_singular_values(a, rows, cols);
  for (int rank : {8, 32, 64}) {
    LowRank lr = low_rank_factorize(a.data(), rows, cols, rank);
    ASSERT_EQ(lr.singular.size(), exact.size());
    for (size_t i = 0; i < exact.size(); ++i)
      EXPECT_NEAR(lr.singular[i], exact[i], 1e-6 * exact[0] + 1e-4 * exact[i]) << i;
    // ||A - U' V^T||_F^2 == sum of the discarded sigma^2 (Eckart-Young optimum).
    double err2 = 0, tail2 = 0, norm2 = 0;
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        double x = 0;
        for (int i = 0; i < rank; ++i)
          x += double(lr.u[size_t(r) * rank + i]) * lr.vt[size_t(i) * cols + c];
        const double d = x - a[size_t(r) * cols + c];
        err2 += d * d;
        norm2 += double(a[size_t(r) * cols + c]) * a[size_t(r) * cols + c];
      }
    for (size_t i = size_t(rank); i < exact.size(); ++i) tail2 += exact[i] * exact[i];
    EXPECT_NEAR(std::sqrt(err2), std::sqrt(tail2), 1e-5 * std::sqrt(norm2)) << "rank " << rank;
  }
}

}  // namespace
}  // namespace kvo
