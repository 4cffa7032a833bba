// The per-sequence KV tables of a batched decode step: one launch serves up to kMaxSeqs
// sequences, each with its own (capacity, kv_heads * head_dim) key and value tables (the dense
// caches of Backend::rope_store_attention_batch_at). Kernels take it by value
// (__grid_constant__), so a recorded step holds the pointers and nothing is copied per step.
#pragma once
#include <cuda_bf16.h>

namespace kvo::cuda {

constexpr int kMaxSeqs = 64;

struct SeqTables {
  __nv_bfloat16* keys[kMaxSeqs] = {};
  __nv_bfloat16* values[kMaxSeqs] = {};
  int count = 0;  // 0: not batched
};

}  // namespace kvo::cuda
