// The flash-style CPU attention against a naive attention that materializes every score.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/random_inputs.h"

namespace kvo {
namespace {

using testing::random_values;

// out[t, h, :] = softmax_j<=pos(t) (q[t,h] . k[j,kvh] * scale) v[j, kvh]
std::vector<float> naive_attention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const AttentionShape& s) {
  const int G = s.num_heads / s.num_kv_heads, D = s.head_dim;
  std::vector<float> out(s.q_len * s.num_heads * D, 0.0f);
  for (int64_t t = 0; t < s.q_len; ++t) {
    const int64_t pos = s.q_start + t;
    for (int h = 0; h < s.num_heads; ++h) {
      const int kvh = h / G;
      std::vector<double> scores;
      double max_score = -1e300;
      for (int64_t j = 0; j < s.kv_len && j <= pos; ++j) {
        double dot = 0;
        for (int d = 0; d < D; ++d)
          dot += double(q[(t * s.num_heads + h) * D + d]) * k[(j * s.num_kv_heads + kvh) * D + d];
        scores.push_back(dot * s.scale);
        max_score = std::max(max_score, scores.back());
      }
      double total = 0;
      for (double& x : scores) total += (x = std::exp(x - max_score));
      for (size_t j = 0; j < scores.size(); ++j)
        for (int d = 0; d < D; ++d)
          out[(t * s.num_heads + h) * D + d] +=
              float(scores[j] / total * v[(j * s.num_kv_heads + kvh) * D + d]);
    }
  }
  return out;
}

struct Case {
  int heads, kv_heads, head_dim;
  int64_t q_len, q_start;
};

class CpuAttention : public ::testing::TestWithParam<Case> {};

TEST_P(CpuAttention, MatchesNaiveAttention) {
  const Case c = GetParam();
  AttentionShape s{c.heads,
                   c.kv_heads,
                   c.head_dim,
                   c.q_len,
                   c.q_start,
                   c.q_start + c.q_len,
                   1.0f / std::sqrt(float(c.head_dim))};
  auto q = random_values(s.q_len * c.heads * c.head_dim, 1);
  auto k = random_values(s.kv_len * c.kv_heads * c.head_dim, 2);
  auto v = random_values(s.kv_len * c.kv_heads * c.head_dim, 3);
  std::vector<float> out(q.size(), -1.0f);
  const int64_t qw = c.heads * c.head_dim, kw = c.kv_heads * c.head_dim;
  cpu_attention({q.data(), DType::F32, s.q_len, qw, qw}, {k.data(), DType::F32, s.kv_len, kw, kw},
                {v.data(), DType::F32, s.kv_len, kw, kw}, s,
                {out.data(), DType::F32, s.q_len, qw, qw});
  auto expected = naive_attention(q, k, v, s);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected[i], 2e-5) << "at " << i;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuAttention,
                         ::testing::Values(Case{4, 4, 64, 37, 0},       // MHA, prefill
                                           Case{8, 2, 64, 300, 0},      // GQA 4, several tiles
                                           Case{8, 1, 128, 20, 290},    // GQA 8, chunk at offset
                                           Case{4, 2, 32, 1, 517},      // one decode step
                                           Case{2, 2, 16, 129, 128}));  // tile boundaries

}  // namespace
}  // namespace kvo
