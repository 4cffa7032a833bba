#include "model/rope.h"

#include <gtest/gtest.h>

#include <cmath>

namespace kvo {
namespace {

ModelConfig llama31_like() {
  ModelConfig c;
  c.head_dim = 128;
  c.rope_theta = 500000.0f;
  c.rope_scaling.type = RopeScaling::Type::Llama3;
  c.rope_scaling.factor = 8.0f;
  c.rope_scaling.low_freq_factor = 1.0f;
  c.rope_scaling.high_freq_factor = 4.0f;
  c.rope_scaling.original_max_position = 8192;
  return c;
}

TEST(Rope, Llama3ScalingKeepsHighAndDividesLowFrequencies) {
  ModelConfig c = llama31_like();
  RopeParams scaled = make_rope_params(c);
  c.rope_scaling.type = RopeScaling::Type::None;
  RopeParams base = make_rope_params(c);
  ASSERT_EQ(scaled.inv_freq.size(), 64u);
  for (int i = 0; i < 64; ++i) {
    const double wavelen = 2 * M_PI / base.inv_freq[i];
    if (wavelen < 8192.0 / 4) {
      EXPECT_FLOAT_EQ(scaled.inv_freq[i], base.inv_freq[i]) << i;  // high frequency: unchanged
    } else if (wavelen > 8192.0) {
      EXPECT_FLOAT_EQ(scaled.inv_freq[i], base.inv_freq[i] / 8) << i;  // low: divided by factor
    } else {  // medium: strictly between the two
      EXPECT_LT(scaled.inv_freq[i], base.inv_freq[i]) << i;
      EXPECT_GT(scaled.inv_freq[i], base.inv_freq[i] / 8) << i;
    }
  }
  EXPECT_FLOAT_EQ(base.inv_freq[1], std::pow(500000.0f, -2.0f / 128));
}

TEST(Rope, FrequencyFactorsDivide) {
  ModelConfig c = llama31_like();
  c.rope_scaling.type = RopeScaling::Type::None;
  RopeParams base = make_rope_params(c);
  c.rope_freq_factors.assign(64, 2.0f);
  RopeParams divided = make_rope_params(c);
  for (int i = 0; i < 64; ++i) EXPECT_FLOAT_EQ(divided.inv_freq[i], base.inv_freq[i] / 2);
}

}  // namespace
}  // namespace kvo
