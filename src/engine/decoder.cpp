#include "engine/decoder.h"

#include <algorithm>

#include "util/error.h"

namespace kvo {
namespace {

bool any_wants_pre_rope_keys(const std::vector<KvPolicy*>& kvs) {
  return std::any_of(kvs.begin(), kvs.end(),
                     [](const KvPolicy* kv) { return kv->wants_pre_rope_keys(); });
}

}  // namespace

Decoder::Decoder(Transformer& model, std::vector<KvPolicy*> kvs, const SamplingParams& sampling,
                 bool record)
    : model_(model),
      kvs_(std::move(kvs)),
      sampling_(sampling),
      record_(record && std::all_of(kvs_.begin(), kvs_.end(),
                                    [](const KvPolicy* kv) { return kv->recordable(); })),
      batch_(model.make_decode_batch(int64_t(kvs_.size()), any_wants_pre_rope_keys(kvs_))),
      uniforms_(kvs_.size()),
      positions_(kvs_.size(), 0),
      step_positions_(kvs_.size()),
      readbacks_{model.backend().ints_readback(int64_t(kvs_.size())),
                 model.backend().ints_readback(int64_t(kvs_.size()))} {
  check(!kvs_.empty(), "internal: a decoder needs at least one sequence");
  validate(sampling);
  for (size_t b = 0; b < kvs_.size(); ++b) {
    SamplingParams p = sampling;
    p.seed += uint64_t(b);
    samplers_.emplace_back(p);
  }
}

void Decoder::queue_sample(int64_t first, int64_t count) {
  for (int64_t b = first; b < first + count; ++b) uniforms_[b] = float(samplers_[b].next_uniform());
  model_.backend().sample(batch_.logits.tensor().row_range(first, count), sampling_.temperature,
                          sampling_.top_k, sampling_.top_p,
                          std::span(uniforms_).subspan(first, count),
                          batch_.ids.tensor().row_range(first, count));
}

std::vector<int32_t> Decoder::sample(int64_t first, int64_t count) {
  queue_sample(first, count);
  return model_.backend().read_ints(batch_.ids.tensor().row_range(first, count));
}

int32_t Decoder::prefill(int64_t b, std::span<const int32_t> prompt,
                         const std::function<void(int64_t, int64_t)>& on_chunk) {
  check(b >= 0 && b < int64_t(kvs_.size()), "internal: no sequence {} in the decoder", b);
  check(!prompt.empty(), "the prompt is empty");
  check(in_flight_ == 0, "internal: a prompt is prefilled while decode steps are in flight");
  model_.prefill(prompt, *kvs_[b], batch_.logits.tensor().row_range(b, 1), 0, on_chunk);
  kvs_[b]->finish_prefill();
  positions_[b] = int64_t(prompt.size());
  return sample(b, 1)[0];
}

int32_t Decoder::copy_prefilled(int64_t b, int64_t from) {
  check(b >= 0 && b < int64_t(kvs_.size()) && from >= 0 && from < int64_t(kvs_.size()) &&
            b != from && positions_[from] > 0,
        "internal: sequence {} cannot copy sequence {}", b, from);
  check(in_flight_ == 0, "internal: a prompt is copied while decode steps are in flight");
  kvs_[b]->copy_from(*kvs_[from]);
  model_.backend().copy(batch_.logits.tensor().row_range(from, 1),
                        batch_.logits.tensor().row_range(b, 1));
  positions_[b] = positions_[from];
  return sample(b, 1)[0];
}

std::vector<int32_t> Decoder::step() {
  check(in_flight_ == 0, "internal: step() with {} decode steps in flight", in_flight_);
  queue_step();
  return collect();
}

void Decoder::queue_step() {
  check(in_flight_ < int(readbacks_.size()), "internal: {} decode steps are already in flight",
        in_flight_);
  Backend& backend = model_.backend();
  for (size_t b = 0; b < kvs_.size(); ++b) {
    check(positions_[b] + 1 <= kvs_[b]->capacity(),
          "sequence {} needs {} tokens but its KV cache holds {}", b, positions_[b] + 1,
          kvs_[b]->capacity());
    step_positions_[b] = int32_t(positions_[b]);
  }
  backend.write_ints(batch_.positions.tensor(), step_positions_);
  const int64_t n = int64_t(kvs_.size());
  // Greedy sampling reads no draws, so a recording can hold it too (and the samplers' draws are
  // not taken: greedy never reads them).
  const bool greedy = sampling_.temperature == 0.0f;
  bool sampled = false;
  if (record_) {
    // The first step records (a backend that cannot record queues every step instead).
    if (!recording_)
      recording_ = backend.record([&] {
        model_.queue_decode_step(batch_, kvs_, {}, true);
        if (greedy) queue_sample(0, n);
      });
    if (recording_) {
      recording_->replay();
      sampled = greedy;
    } else {
      model_.queue_decode_step(batch_, kvs_, {}, true);
    }
    for (size_t b = 0; b < kvs_.size(); ++b) kvs_[b]->recorded_step_done(positions_[b] + 1);
  } else {
    model_.queue_decode_step(batch_, kvs_, positions_, false);
  }
  for (int64_t& p : positions_) ++p;
  if (!sampled) queue_sample(0, n);
  readbacks_[(oldest_ + in_flight_) % 2]->queue(batch_.ids.tensor());
  ++in_flight_;
}

std::vector<int32_t> Decoder::collect() {
  check(in_flight_ > 0, "internal: no decode step to collect");
  std::vector<int32_t> ids = readbacks_[oldest_]->wait();
  oldest_ = (oldest_ + 1) % 2;
  --in_flight_;
  return ids;
}

}  // namespace kvo
