// One KV head's attention quality at one step (KvHeadDiagnostics, kv_policy.h): exact attention
// of its query group over every token, compared with the output a sparse policy produced from
// the tokens it attended. Shared by the CPU reference and the CUDA sparse policies.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "kv/kv_policy.h"

namespace kvo {

struct HeadStep {
  int layer = 0, kv_head = 0, group = 1, head_dim = 0;
  int64_t q_len = 0, start = 0;  // queries at positions [start, start + q_len)
  const float* q = nullptr;      // (q_len, q_stride) post-RoPE queries of all heads
  const float* out = nullptr;    // (q_len, q_stride) the policy's attention output
  int64_t q_stride = 0;
  float scale = 0;
  // Exact key / value of this KV head at position p < start + q_len (head_dim floats).
  std::function<const float*(int64_t)> key, value;
};

// positions: ascending token positions the head attended.
KvHeadDiagnostics diagnose_head(const HeadStep& s, std::vector<int64_t> positions);

}  // namespace kvo
