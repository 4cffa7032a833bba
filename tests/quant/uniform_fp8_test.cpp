#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "quant/bf16.h"
#include "quant/fp8.h"
#include "quant/scalar_codecs.h"
#include "quant/uniform.h"

namespace kvo::quant {
namespace {

TEST(Uniform, ExactOnLevelsAndBits) {
  UniformQuantizer q(2, 4);
  const std::vector<float> x = {0.0f, 1.0f, 2.0f, 3.0f, -4.0f, -2.0f, 0.0f, 2.0f};
  std::vector<float> y(8);
  const auto bytes = q.encode(x.data(), 1, 8);
  EXPECT_EQ(bytes.size(), 4u + 2 * 8);
  q.decode(bytes.data(), 1, 8, y.data());
  EXPECT_EQ(x, y);
  EXPECT_DOUBLE_EQ(UniformQuantizer(2, 64).bits_per_value(128), 3.0);
}

// The code as rint((v - lo) / step) gives it, against uniform_code's product path.
uint32_t code_by_division(float v, float lo, float step, uint32_t qmax) {
  if (!(step > 0.0f)) return 0;
  const float t = std::rint((v - lo) / step);
  return uint32_t(t < 0.0f ? 0.0f : t > float(qmax) ? float(qmax) : t);
}

// Quotients a few ulps on either side of every half-integer k + 0.5 (where the product path
// must give way to the division), steps from subnormal to near the float maximum, random groups
// over 60 decades, infinite values and zero-width groups: the same code as the division.
TEST(Uniform, CodeFromTheReciprocalEqualsTheDivision) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> unit(1.0f, 2.0f);
  std::uniform_int_distribution<int> exponent(-149, 120);
  size_t checked = 0, mismatches = 0;
  const auto check = [&](float v, float lo, float step, uint32_t qmax) {
    ++checked;
    const uint32_t got = uniform_code(v, lo, step, 1.0f / step, qmax),
                   want = code_by_division(v, lo, step, qmax);
    if (got != want && ++mismatches <= 5)
      ADD_FAILURE() << "v " << v << " lo " << lo << " step " << step << ": " << got << " vs "
                    << want;
  };
  for (int bits : {1, 2, 4, 8}) {
    const uint32_t qmax = (1u << bits) - 1;
    for (int s = 0; s < 200; ++s) {
      const float step = std::ldexp(unit(rng), exponent(rng));
      for (uint32_t k = 0; k <= qmax; ++k) {
        float a = float((double(k) + 0.5) * double(step));
        for (int d = 0; d < 24; ++d) a = std::nextafter(a, 0.0f);
        for (int d = 0; d < 48; ++d, a = std::nextafter(a, INFINITY)) check(a, 0.0f, step, qmax);
      }
    }
    std::normal_distribution<float> nd;
    for (int g = 0; g < 2000; ++g) {
      const float scale = std::pow(10.0f, float(g % 61 - 30));
      float lo = nd(rng) * scale, hi = nd(rng) * scale;
      if (hi < lo) std::swap(lo, hi);
      const float step = (hi - lo) / float(qmax);
      std::uniform_real_distribution<float> in(lo, hi);
      for (int j = 0; j < 64; ++j) check(in(rng), lo, step, qmax);
      check(lo, lo, step, qmax);
      check(hi, lo, step, qmax);
    }
    for (float v : {INFINITY, -INFINITY, 0.0f, 1e30f})
      for (float step : {0.0f, 1e-45f, 1e-40f, 3e38f, 1.0f}) check(v, -1.0f, step, qmax);
  }
  EXPECT_EQ(mismatches, 0u) << "of " << checked;
}

TEST(Uniform, ErrorWithinHalfStep) {
  for (int bits : {1, 2, 3, 4, 8}) {
    UniformQuantizer q(bits, 32);
    std::mt19937 rng(bits);
    std::normal_distribution<float> nd;
    const size_t n = 50, dim = 100;  // last group short
    std::vector<float> x(n * dim), y(n * dim);
    for (float& v : x) v = nd(rng);
    q.decode(q.encode(x.data(), n, dim).data(), n, dim, y.data());
    for (size_t i = 0; i < n; ++i)
      for (size_t g = 0; g < dim; g += 32) {
        float lo = INFINITY, hi = -INFINITY;
        for (size_t j = g; j < std::min(dim, g + 32); ++j) {
          lo = std::min(lo, x[i * dim + j]);
          hi = std::max(hi, x[i * dim + j]);
        }
        const float step = (hi - lo) / float((1 << bits) - 1);
        for (size_t j = g; j < std::min(dim, g + 32); ++j)
          ASSERT_LE(std::fabs(x[i * dim + j] - y[i * dim + j]), 0.5f * step * 1.0001f + 1e-6f);
      }
  }
}

TEST(Fp8, EveryCodeRoundTrips) {
  for (int b = 0; b < 256; ++b) {
    const float v = e4m3_to_float(uint8_t(b));
    if (std::isnan(v)) continue;
    if (v == 0.0f) continue;  // +-0 both map to their own sign
    EXPECT_EQ(float_to_e4m3(v), b) << b << " " << v;
  }
  EXPECT_EQ(e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(e4m3_to_float(0x38), 1.0f);
}

TEST(Fp8, RoundsToNearestEvenAndSaturates) {
  EXPECT_EQ(e4m3_to_float(float_to_e4m3(1.0625f)), 1.0f);   // halfway 1 and 1.125 -> even
  EXPECT_EQ(e4m3_to_float(float_to_e4m3(1.1875f)), 1.25f);  // halfway 1.125 and 1.25 -> even
  EXPECT_EQ(e4m3_to_float(float_to_e4m3(1e6f)), 448.0f);
  EXPECT_EQ(e4m3_to_float(float_to_e4m3(-500.0f)), -448.0f);
  EXPECT_TRUE(std::isnan(e4m3_to_float(float_to_e4m3(NAN))));
  Fp8Quantizer q;
  EXPECT_DOUBLE_EQ(q.bits_per_value(128), 8.0);
}

TEST(QuantBf16, IdentityUpToRounding) {
  Bf16Quantizer q;
  std::vector<float> x = {1.0f, -2.5f, 3.14159f, 1e-3f}, y(4);
  q.decode(q.encode(x.data(), 1, 4).data(), 1, 4, y.data());
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], x[i], std::fabs(x[i]) / 128);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_DOUBLE_EQ(q.bits_per_value(128), 16.0);
}

}  // namespace
}  // namespace kvo::quant
