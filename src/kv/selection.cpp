#include "kv/selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kvo {

std::vector<float> aggregate_landmark_scores(const float* logits, int groups, int64_t positions,
                                             int64_t m, GroupAgg agg) {
  std::vector<float> out(static_cast<size_t>(m), agg == GroupAgg::Max ? -INFINITY : 0.0f);
  std::vector<float> per_head(static_cast<size_t>(m));
  for (int g = 0; g < groups; ++g) {
    std::fill(per_head.begin(), per_head.end(), 0.0f);
    for (int64_t t = 0; t < positions; ++t) {
      const float* row = logits + (int64_t(g) * positions + t) * m;
      float mx = -INFINITY;
      for (int64_t j = 0; j < m; ++j) mx = std::max(mx, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < m; ++j) sum += std::exp(double(row[j] - mx));
      const double inv = sum > 0 ? 1.0 / sum : 0.0;
      for (int64_t j = 0; j < m; ++j) per_head[j] += float(std::exp(double(row[j] - mx)) * inv);
    }
    for (int64_t j = 0; j < m; ++j) {
      if (agg == GroupAgg::Max)
        out[j] = std::max(out[j], per_head[j]);
      else
        out[j] += per_head[j] / float(groups);
    }
  }
  return out;
}

std::vector<int64_t> top_k_indices(const std::vector<float>& scores, int64_t k) {
  const int64_t m = int64_t(scores.size());
  std::vector<int64_t> idx(static_cast<size_t>(m));
  std::iota(idx.begin(), idx.end(), 0);
  if (k >= m) return idx;
  if (k <= 0) return {};
  auto better = [&](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
  idx.resize(size_t(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace kvo
