// B sequences generated together (kvoffload bench --batch): the prompts are prefilled one after
// another (or, with shared_prompt, the first one is and its KV state is copied into the others),
// then every decode step runs all B sequences at once (engine/decoder.h). Every
// sequence generates max_new_tokens (no stop tokens): a benchmark and test driver, no text.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "engine/sampler.h"
#include "kv/kv_policy.h"
#include "model/transformer.h"

namespace kvo {

struct BatchOptions {
  int max_new_tokens = 64;
  SamplingParams sampling;  // sequence b samples with seed + b
  bool record = true;       // false: queue every step eagerly even when it could be recorded
  // Every sequence has the same prompt: it is prefilled once and the other sequences copy its KV
  // state (KvPolicy::copy_from).
  bool shared_prompt = false;
};

struct BatchResult {
  std::vector<std::vector<int32_t>> tokens;  // per sequence, max_new_tokens ids
  std::vector<int64_t> prompt_tokens;        // per prefilled sequence (shared_prompt: one)
  std::vector<double> prefill_seconds;       // per prefilled sequence, including its first sample
  double copy_seconds = 0;                   // shared_prompt: the B - 1 copies of its KV state
  // The first of the max_new_tokens - 1 batched decode steps also records the step (CUDA graph)
  // when it is recorded: it is timed apart from the steady-state steps after it.
  double first_step_seconds = 0;
  double decode_seconds = 0;                 // the max_new_tokens - 2 steps after the first
  bool recorded = false;                     // whether the steps were replayed from a recording
  double prefill_tokens_per_second() const;  // all prefilled tokens / all prefill time
  double decode_tokens_per_second() const;   // aggregate: B / decode_step_seconds
  // One steady-state batched step (the mean after the first); the first step's time when it is
  // the only one.
  double decode_step_seconds() const;
};

// kvs[b] holds sequence b (empty policies with capacity >= prompt + max_new_tokens - 1).
BatchResult generate_batch(Transformer& model, std::span<KvPolicy* const> kvs,
                           const std::vector<std::vector<int32_t>>& prompts,
                           const BatchOptions& options);

}  // namespace kvo
