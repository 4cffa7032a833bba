#include "quant/residual.h"

#include <gtest/gtest.h>

#include <random>

#include "quant/bf16.h"
#include "quant/higgs.h"
#include "quant/spec.h"

namespace kvo::quant {
namespace {

// n vectors, each block of m consecutive vectors a copy of one random vector.
std::vector<float> blockwise_equal(size_t n, size_t m, size_t dim, bool bf16_exact) {
  std::mt19937 rng(21);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * dim);
  for (size_t b = 0; b < n; b += m)
    for (size_t j = 0; j < dim; ++j) {
      float v = nd(rng);
      if (bf16_exact) v = bf16_to_float(float_to_bf16(v));
      for (size_t i = b; i < std::min(n, b + m); ++i) x[i * dim + j] = v;
    }
  return x;
}

double sq_error(const Quantizer& q, const std::vector<float>& x, size_t n, size_t dim) {
  std::vector<float> y(x.size());
  q.decode(q.encode(x.data(), n, dim).data(), n, dim, y.data());
  double se = 0;
  for (size_t i = 0; i < x.size(); ++i) se += double(x[i] - y[i]) * (x[i] - y[i]);
  return se;
}

// Vectors equal within each meta group: the mean is each vector exactly, so the only error
// left is the meta quantizer's. With an exact meta (bf16 on bf16 values) the residuals are
// exactly zero, HIGGS encodes them as scale 0, and the reconstruction is exact.
TEST(Residual, EqualVectorsInAGroupAddNoError) {
  const size_t n = 64, m = 4, dim = 128;
  const auto xb = blockwise_equal(n, m, dim, true);
  auto exact = parse_quantizer("residual:m=4,meta=bf16,res=higgs:d=8,n=256");
  EXPECT_EQ(sq_error(*exact, xb, n, dim), 0.0);

  // With a lossy meta, the meta codes are those of the vector itself and the residual stage
  // only corrects: the total error is at most the meta quantizer's alone.
  const auto x = blockwise_equal(n, m, dim, false);
  auto res = parse_quantizer("residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256");
  HiggsQuantizer meta(4, 256);
  const auto all = res->encode(x.data(), n, dim);
  const auto direct = meta.encode(x.data(), n, dim);
  const size_t block =
      meta.bytes_per_vector(dim) + 4 * HiggsQuantizer(8, 256).bytes_per_vector(dim);
  for (size_t b = 0; b < n / m; ++b)
    EXPECT_TRUE(std::equal(all.begin() + b * block,
                           all.begin() + b * block + meta.bytes_per_vector(dim),
                           direct.begin() + b * m * meta.bytes_per_vector(dim)));
  EXPECT_LE(sq_error(*res, x, n, dim), sq_error(meta, x, n, dim));
  auto res_bf16 = parse_quantizer("residual:m=4,meta=higgs:d=4,n=256,res=bf16");
  EXPECT_LT(sq_error(*res_bf16, x, n, dim), 1e-4 * sq_error(meta, x, n, dim));
}

TEST(Residual, BitsPerValueAndPartialBlock) {
  auto q = parse_quantizer("residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256");
  EXPECT_NEAR(q->bits_per_value(128), 2.25 / 4 + 1.25, 1e-3);
  const size_t n = 10, dim = 128;  // blocks of 4, 4, 2
  EXPECT_EQ(q->encoded_bytes(n, dim), 3 * 36 + 10 * 20u);
  std::mt19937 rng(22);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * dim), y(n * dim);
  for (float& v : x) v = nd(rng);
  q->decode(q->encode(x.data(), n, dim).data(), n, dim, y.data());
  double se = 0;
  for (size_t i = 0; i < x.size(); ++i) se += double(x[i] - y[i]) * (x[i] - y[i]);
  EXPECT_LT(se / x.size(), 0.5);
}

}  // namespace
}  // namespace kvo::quant
