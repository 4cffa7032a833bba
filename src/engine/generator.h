// One sequence's generation loop: prefill the prompt, then decode token by token until an
// end-of-turn id, a stop string, the token limit or the context limit.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "kv/kv_policy.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace kvo {

struct GenerationOptions {
  int max_new_tokens = 256;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;          // end-of-turn ids (not part of the output)
  std::vector<std::string> stop_strings;  // output is cut before the first occurrence
  bool ignore_eos = false;                // benchmarks: always generate max_new_tokens
  bool prefill_progress = true;           // a progress bar for long prompts (callers with
                                          // their own bar turn it off)
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids, stop id excluded
  std::string text;
  std::string stop_reason;  // "eos", "stop_string", "length", "context"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // time of the decode steps (tokens.size() - 1 forwards)
  KvMemoryReport kv;
  double prefill_tokens_per_second() const;
  double decode_tokens_per_second() const;
};

// Streams text pieces (complete UTF-8, stop strings held back) to `on_text` as they come.
GenerationResult generate(Transformer& model, const Tokenizer& tokenizer, KvPolicy& kv,
                          std::span<const int32_t> prompt, const GenerationOptions& options,
                          const std::function<void(std::string_view)>& on_text = {});

}  // namespace kvo
