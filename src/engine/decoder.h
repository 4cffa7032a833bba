// The device side of decoding, shared by generate() (one sequence; text and stop rules on the
// host) and generate_batch() (B sequences): each prompt is prefilled into its sequence's row of
// the logits, tokens are sampled on the device (Backend::sample, the rule of sampler.h), and each
// decode step runs every sequence through one forward (matmuls over B rows, attention per
// sequence through its own KvPolicy). The step is recorded once and replayed (CUDA graphs) when
// the backend can record and every policy is recordable, else queued eagerly each time; either
// way the only wait per token is reading the sampled ids back, and the host can queue the next
// step before that wait (queue_step / collect), so the device does not idle between steps.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "engine/sampler.h"
#include "kv/kv_policy.h"
#include "model/transformer.h"

namespace kvo {

class Decoder {
 public:
  // kvs[b] holds sequence b; sequence b samples with sampling.seed + b. record = false queues
  // every step eagerly even where it could be recorded (for comparisons).
  Decoder(Transformer& model, std::vector<KvPolicy*> kvs, const SamplingParams& sampling,
          bool record = true);

  // Prefills sequence b's prompt (from position 0) and returns its first token.
  int32_t prefill(int64_t b, std::span<const int32_t> prompt,
                  const std::function<void(int64_t, int64_t)>& on_chunk = {});
  // Sequence b continues from sequence `from`'s prefilled prompt: its KV state is copied
  // (KvPolicy::copy_from) and its first token sampled from the same logits with its own seed.
  int32_t copy_prefilled(int64_t b, int64_t from);
  // Feeds every sequence its latest token and returns the next one of each (no step may be in
  // flight). kvo::Error when a sequence's KV cache is full.
  std::vector<int32_t> step();
  // step() in two halves, for callers that know the steps ahead (generate_batch: a fixed number
  // of tokens; generate() stops on EOS and steps one at a time). queue_step() queues a step and
  // returns: its input tokens are the last queued step's samples, already on the device.
  // collect() waits for the oldest queued step's tokens. At most two steps are in flight: queue
  // step t + 1, then collect step t, and the device runs t + 1 while the host reads t.
  void queue_step();
  std::vector<int32_t> collect();
  // Steps queued and not collected yet.
  int in_flight() const { return in_flight_; }
  // Whether the steps so far were replayed from a recording.
  bool recorded() const { return recording_ != nullptr; }

 private:
  // Queues the sampling of logits rows [first, first + count) into those rows of the ids.
  void queue_sample(int64_t first, int64_t count);
  // queue_sample, then reads the ids back.
  std::vector<int32_t> sample(int64_t first, int64_t count);

  Transformer& model_;
  std::vector<KvPolicy*> kvs_;
  SamplingParams sampling_;
  bool record_;
  Transformer::DecodeBatch batch_;
  std::vector<Sampler> samplers_;
  std::vector<float> uniforms_;
  std::vector<int64_t> positions_;  // per sequence: the position its latest token goes to
  std::vector<int32_t> step_positions_;
  // Step t's ids are read back through readbacks_[t % 2]; steps oldest_ .. oldest_ + in_flight_
  // - 1 (mod 2) are queued and not collected.
  std::array<std::unique_ptr<IntsReadback>, 2> readbacks_;
  int oldest_ = 0, in_flight_ = 0;
  std::unique_ptr<Recording> recording_;  // last: destroyed first, before the buffers it uses
};

}  // namespace kvo
