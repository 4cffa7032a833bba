#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <map>

#include "util/error.h"

namespace kvo {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};

TEST(Sampler, GreedyTakesTheFirstMaximum) {
  Sampler s(SamplingParams{});
  EXPECT_EQ(s.sample(kLogits), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  SamplingParams p{1.0f, 0, 1.0f, 42};
  Sampler a(p), b(p);
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a.sample(kLogits));
    tb.push_back(b.sample(kLogits));
  }
  EXPECT_EQ(ta, tb);
  p.seed = 43;
  Sampler c(p);
  std::vector<int32_t> tc;
  for (int i = 0; i < 200; ++i) tc.push_back(c.sample(kLogits));
  EXPECT_NE(ta, tc);
}

TEST(Sampler, TopKOneIsGreedy) {
  Sampler s(SamplingParams{5.0f, 1, 1.0f, 7});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(kLogits), 1);
}

TEST(Sampler, TopPKeepsOnlyTheNucleus) {
  // Softmax of kLogits: ids 1 and 3 hold ~0.79 of the mass together; top_p 0.7 keeps only them.
  Sampler s(SamplingParams{1.0f, 0, 0.7f, 3});
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[s.sample(kLogits)];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 850);
  EXPECT_GT(seen[3], 850);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  Sampler s(SamplingParams{1.0f, 0, 1.0f, 11});
  std::map<int32_t, int> seen;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++seen[s.sample(kLogits)];
  double z = 0;
  for (float l : kLogits) z += std::exp(l);
  for (int id = 0; id < 5; ++id)
    EXPECT_NEAR(seen[id] / double(n), std::exp(kLogits[id]) / z, 0.015) << id;
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler(SamplingParams{-1.0f, 0, 1.0f, 0}), Error);
  EXPECT_THROW(Sampler(SamplingParams{1.0f, 0, 0.0f, 0}), Error);
  EXPECT_THROW(Sampler(SamplingParams{1.0f, -2, 1.0f, 0}), Error);
}

}  // namespace
}  // namespace kvo
