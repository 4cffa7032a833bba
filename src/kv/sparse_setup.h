// What the sparse policies' CPU reference (sparse.cpp) and CUDA placement
// (cuda/cuda_sparse_policy_impl.h) derive alike from a resolved KvSpec and the model: the method,
// the attention-head geometry, the quantizers of the offloaded store and of the landmarks, and
// the one-line description `kvoffload diagnose` prints. Both policies inherit it, so the two can
// never disagree on a default group or a knob check.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "kv/head_diagnostics.h"
#include "kv/kv_layout.h"
#include "kv/kv_spec.h"
#include "model/config.h"
#include "quant/quantizer.h"

namespace kvo {

enum class SparseMethod { ShadowKV, YAKV, Quest };

struct SparseSetup {
  // kvo::Error when a knob does not fit the model (--rank above kv_heads * head_dim).
  SparseSetup(const ModelConfig& config, const KvSpec& spec);

  // "<spec>: prompt T tokens, sinks [0,s), M middle chunks of C (...), local [l,T)[, rank r]".
  std::string describe(const KvSpec& spec, const KvLayout& layout, int64_t prompt) const;

  float scale() const { return 1.0f / std::sqrt(float(D_)); }  // softmax scale, 1/sqrt(head_dim)

  // Diagnostics of KV head h at one step (head_diagnostics.h): q / out are (q_len, Hq * D) on
  // the host; the caller adds the key / value lookups of its own storage.
  HeadStep head_step(int layer, int h, int64_t q_len, int64_t start, const float* q,
                     const float* out) const;

  SparseMethod method_;
  int H_ = 0, D_ = 0, Hq_ = 0, G_ = 1;  // KV heads, head_dim, query heads, query heads per KV head
  int64_t W_ = 0;                       // kv_heads * head_dim: one token's K (or V) row
  quant::QuantizerPtr store_;           // offloaded K/V records (shadowkv, yakv)
  quant::QuantizerPtr landmark_q_;      // yakv's landmarks
};

}  // namespace kvo
