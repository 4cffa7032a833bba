#include "engine/batch_generator.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "engine/decoder.h"
#include "util/error.h"

namespace kvo {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

double BatchResult::prefill_tokens_per_second() const {
  const double s = std::accumulate(prefill_seconds.begin(), prefill_seconds.end(), 0.0);
  return s > 0 ? double(std::accumulate(prompt_tokens.begin(), prompt_tokens.end(), int64_t{0})) / s
               : 0.0;
}
double BatchResult::decode_step_seconds() const {
  const int64_t steady_steps = tokens.empty() ? 0 : int64_t(tokens[0].size()) - 2;
  return steady_steps > 0 ? decode_seconds / double(steady_steps) : first_step_seconds;
}
double BatchResult::decode_tokens_per_second() const {
  const double step = decode_step_seconds();
  return step > 0 ? double(tokens.size()) / step : 0.0;
}

BatchResult generate_batch(Transformer& model, std::span<KvPolicy* const> kvs,
                           const std::vector<std::vector<int32_t>>& prompts,
                           const BatchOptions& options) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  check(B > 0 && int64_t(kvs.size()) == B, "internal: generate_batch needs one policy per prompt");
  check(options.max_new_tokens >= 1, "the batch must generate at least one token");
  check(!options.shared_prompt || std::all_of(prompts.begin(), prompts.end(),
                                              [&](const auto& p) { return p == prompts[0]; }),
        "internal: a shared prompt must be every sequence's prompt");
  for (int64_t b = 0; b < B; ++b)
    check(int64_t(prompts[b].size()) + options.max_new_tokens - 1 <= kvs[b]->capacity(),
          "sequence {} needs {} tokens but its KV cache holds {}", b,
          int64_t(prompts[b].size()) + options.max_new_tokens - 1, kvs[b]->capacity());
  Decoder decoder(model, std::vector<KvPolicy*>(kvs.begin(), kvs.end()), options.sampling,
                  options.record);
  BatchResult result;
  result.tokens.resize(B);
  for (int64_t b = 0; b < (options.shared_prompt ? 1 : B); ++b) {
    const auto t0 = Clock::now();
    result.tokens[b].push_back(decoder.prefill(b, prompts[b]));
    result.prefill_seconds.push_back(seconds_since(t0));
    result.prompt_tokens.push_back(int64_t(prompts[b].size()));
  }
  if (options.shared_prompt) {
    const auto t0 = Clock::now();
    for (int64_t b = 1; b < B; ++b) result.tokens[b].push_back(decoder.copy_prefilled(b, 0));
    result.copy_seconds = seconds_since(t0);
  }
  auto t_step = Clock::now();
  // Step s + 1 is queued before step s is collected: the device runs it while the host waits.
  if (options.max_new_tokens > 1) decoder.queue_step();
  for (int step = 1; step < options.max_new_tokens; ++step) {
    if (step + 1 < options.max_new_tokens) decoder.queue_step();
    const std::vector<int32_t> next = decoder.collect();
    for (int64_t b = 0; b < B; ++b) result.tokens[b].push_back(next[b]);
    if (step == 1) {
      result.first_step_seconds = seconds_since(t_step);
      t_step = Clock::now();
    }
  }
  if (options.max_new_tokens > 2) result.decode_seconds = seconds_since(t_step);
  result.recorded = decoder.recorded();
  return result;
}

}  // namespace kvo
