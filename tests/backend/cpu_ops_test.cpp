// CPU backend ops against plain loops written from their definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/random_inputs.h"
#include "util/error.h"

namespace kvo {
namespace {

using testing::random_values;

Tensor view(std::vector<float>& v, int64_t rows, int64_t cols) {
  return {v.data(), DType::F32, rows, cols, cols};
}

TEST(CpuOps, RopeLayoutsAgreeUnderThePairPermutation) {
  // A GGUF llama head stores HF dims (i, i + D/2) at (2i, 2i + 1): rotating adjacent pairs of
  // the permuted vector must equal rotating halves of the original.
  const int D = 64, heads = 3, T = 5;
  auto backend = make_cpu_backend(1);
  RopeParams rope;
  for (int i = 0; i < D / 2; ++i) rope.inv_freq.push_back(std::pow(10000.0f, -2.0f * i / D));
  std::vector<int32_t> positions = {0, 1, 7, 100, 4095};
  auto halves = random_values(T * heads * D, 5);
  std::vector<float> pairs(halves.size());
  for (int t = 0; t < T * heads; ++t)
    for (int i = 0; i < D / 2; ++i) {
      pairs[t * D + 2 * i] = halves[t * D + i];
      pairs[t * D + 2 * i + 1] = halves[t * D + i + D / 2];
    }
  backend->rope(view(halves, T, heads * D), positions, D, rope);
  rope.adjacent_pairs = true;
  backend->rope(view(pairs, T, heads * D), positions, D, rope);
  for (int t = 0; t < T * heads; ++t)
    for (int i = 0; i < D / 2; ++i) {
      EXPECT_FLOAT_EQ(pairs[t * D + 2 * i], halves[t * D + i]);
      EXPECT_FLOAT_EQ(pairs[t * D + 2 * i + 1], halves[t * D + i + D / 2]);
    }
  // Position 0 is the identity; position p rotates pair 0 by p radians.
  auto x = random_values(D, 9);
  auto y = x;
  std::vector<int32_t> p3 = {3};
  rope.adjacent_pairs = false;
  backend->rope(view(y, 1, D), p3, D, rope);
  EXPECT_NEAR(y[0], x[0] * std::cos(3.0f) - x[D / 2] * std::sin(3.0f), 1e-5);
}

TEST(CpuOps, MatmulWithBiasMatchesLoops) {
  auto backend = make_cpu_backend(2);
  const int n = 7, in = 33, out = 19;
  auto x = random_values(n * in, 1), w = random_values(out * in, 2), b = random_values(out, 3);
  std::vector<float> y(n * out);
  Tensor bias = view(b, 1, out);
  backend->matmul(view(x, n, in), view(w, out, in), &bias, view(y, n, out));
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < out; ++c) {
      double s = b[c];
      for (int i = 0; i < in; ++i) s += double(x[r * in + i]) * w[c * in + i];
      EXPECT_NEAR(y[r * out + c], s, 1e-4);
    }
}

TEST(CpuOps, RmsnormAndSwiglu) {
  auto backend = make_cpu_backend(1);
  auto x = random_values(3 * 16, 4), w = random_values(16, 5);
  std::vector<float> y(x.size());
  backend->rmsnorm(view(x, 3, 16), view(w, 1, 16), 1e-6f, view(y, 3, 16));
  for (int r = 0; r < 3; ++r) {
    double ms = 0;
    for (int i = 0; i < 16; ++i) ms += x[r * 16 + i] * x[r * 16 + i] / 16.0;
    for (int i = 0; i < 16; ++i)
      EXPECT_NEAR(y[r * 16 + i], x[r * 16 + i] / std::sqrt(ms + 1e-6) * w[i], 1e-5);
  }
  auto g = random_values(10, 6), u = random_values(10, 7);
  std::vector<float> o(10);
  backend->swiglu(view(g, 1, 10), view(u, 1, 10), view(o, 1, 10));
  for (int i = 0; i < 10; ++i) EXPECT_NEAR(o[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-6);
}

TEST(CpuOps, EmbeddingRejectsIdsOutsideTheVocabulary) {
  auto backend = make_cpu_backend(1);
  auto table = random_values(4 * 8, 1);
  std::vector<float> out(8);
  std::vector<int32_t> bad = {4};
  EXPECT_THROW(backend->embedding(bad, view(table, 4, 8), view(out, 1, 8)), Error);
}

}  // namespace
}  // namespace kvo
