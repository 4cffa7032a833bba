#include "engine/batch_generator.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>

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
  const size_t steps = tokens.empty() ? 0 : tokens[0].size() - 1;
  return steps > 0 ? decode_seconds / double(steps) : 0.0;
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
  validate(options.sampling);
  Backend& backend = model.backend();
  const bool pre_rope = std::any_of(kvs.begin(), kvs.end(),
                                    [](const KvPolicy* kv) { return kv->wants_pre_rope_keys(); });
  const bool recordable =
      std::all_of(kvs.begin(), kvs.end(), [](const KvPolicy* kv) { return kv->recordable(); });
  Transformer::DecodeBatch d = model.make_decode_batch(B, pre_rope);

  BatchResult result;
  result.tokens.resize(B);
  std::vector<Sampler> samplers;
  for (int64_t b = 0; b < B; ++b) {
    SamplingParams p = options.sampling;
    p.seed += uint64_t(b);
    samplers.emplace_back(p);
  }
  std::vector<float> uniforms(B);
  // Samples rows [first, first + count) of the logits into their sequences (reads ids back).
  auto sample = [&](int64_t first, int64_t count) {
    for (int64_t b = first; b < first + count; ++b) uniforms[b] = float(samplers[b].next_uniform());
    const SamplingParams& p = options.sampling;
    const Tensor ids = d.ids.tensor().row_range(first, count);
    backend.sample(d.logits.tensor().row_range(first, count), p.temperature, p.top_k, p.top_p,
                   std::span(uniforms).subspan(first, count), ids);
    const std::vector<int32_t> got = backend.read_ints(ids);
    for (int64_t i = 0; i < count; ++i) result.tokens[first + i].push_back(got[i]);
  };

  std::vector<int64_t> positions(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].size());
    check(n > 0, "prompt {} of the batch is empty", b);
    check(n + options.max_new_tokens - 1 <= kvs[b]->capacity(),
          "sequence {} needs {} tokens but its KV cache holds {}", b,
          n + options.max_new_tokens - 1, kvs[b]->capacity());
    const auto t0 = Clock::now();
    model.prefill(prompts[b], *kvs[b], d.logits.tensor().row_range(b, 1));
    kvs[b]->finish_prefill();
    sample(b, 1);
    result.prefill_seconds.push_back(seconds_since(t0));
    result.prompt_tokens.push_back(n);
    positions[b] = n;
  }

  std::unique_ptr<Recording> recording;
  std::vector<int32_t> step_positions(B);
  const auto t_decode = Clock::now();
  for (int step = 1; step < options.max_new_tokens; ++step) {
    std::copy(positions.begin(), positions.end(), step_positions.begin());
    backend.write_ints(d.positions.tensor(), step_positions);
    if (recordable && options.record) {
      // The first step records (the backend may not be able to: then it queues every step).
      if (!recording)
        recording = backend.record([&] { model.queue_decode_step(d, kvs, {}, true); });
      if (recording)
        recording->replay();
      else
        model.queue_decode_step(d, kvs, {}, true);
      for (int64_t b = 0; b < B; ++b) kvs[b]->recorded_step_done(positions[b] + 1);
    } else {
      model.queue_decode_step(d, kvs, positions, false);
    }
    for (int64_t& p : positions) ++p;
    sample(0, B);
  }
  result.decode_seconds = seconds_since(t_decode);
  result.recorded = recording != nullptr;
  return result;
}

}  // namespace kvo
