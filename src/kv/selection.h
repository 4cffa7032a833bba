// Landmark selection shared by the sparse KV policies (DESIGN.md §3): for one KV head, the
// scores of its query heads against the candidate landmarks become
//   softmax_j(logit[g][t][j]) per query head g and query position t (logits already scaled
//   by 1/sqrt(head_dim)), summed over t, then combined over the GQA group (max or mean),
// and the top-k candidates win (ties: the lowest index).
#pragma once
#include <cstdint>
#include <vector>

#include "kv/kv_spec.h"

namespace kvo {

// logits: [groups][positions][m] row-major. Returns m aggregated scores.
std::vector<float> aggregate_landmark_scores(const float* logits, int groups, int64_t positions,
                                             int64_t m, GroupAgg agg);

// Indices of the k largest scores (ties: lower index first), returned in ascending index order.
// k >= scores.size() returns every index.
std::vector<int64_t> top_k_indices(const std::vector<float>& scores, int64_t k);

}  // namespace kvo
