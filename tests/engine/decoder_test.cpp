// The decoder's two halves of a step (engine/decoder.h): queuing step t + 1 before collecting
// step t gives the tokens of one step at a time (sampled, so the order in which the steps draw
// their random numbers counts too), on the CPU and, where there is one, on the GPU (recorded
// steps, ids read back through pinned memory); misuse is one clear error.
#include "engine/decoder.h"

#include <gtest/gtest.h>

#include "backend/backend.h"
#include "model/random_weights.h"
#include "model/tiny_random_model.h"
#include "util/error.h"

namespace kvo {
namespace {

struct Sequences {
  std::vector<std::unique_ptr<KvPolicy>> owned;
  std::vector<KvPolicy*> kvs;
};

Sequences dense_sequences(Backend& backend, const ModelConfig& c, int n) {
  Sequences s;
  for (int b = 0; b < n; ++b) {
    s.owned.push_back(make_dense_policy(backend, c, 64));
    s.kvs.push_back(s.owned.back().get());
  }
  return s;
}

class DecoderOnBackend : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderOnBackend, TwoStepsInFlightGiveTheTokensOfOneAtATime) {
  const ModelConfig c = testing::tiny_config("LlamaForCausalLM");
  auto backend = make_backend(GetParam() == "cuda" ? "auto" : "cpu", 0);
  if (backend->name() != GetParam()) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  Transformer model(*backend, c, random_weights(c, 9));
  const auto prompts = testing::tiny_prompts(c.vocab_size, {6, 11});
  const SamplingParams sampling{1.5f, 0, 1.0f, 21};
  constexpr int kSteps = 12;

  auto decode = [&](bool pipelined) {
    Sequences s = dense_sequences(*backend, c, 2);
    Decoder decoder(model, s.kvs, sampling);
    std::vector<std::vector<int32_t>> tokens(2);
    for (int b = 0; b < 2; ++b) tokens[b].push_back(decoder.prefill(b, prompts[b]));
    if (pipelined) decoder.queue_step();
    for (int step = 0; step < kSteps; ++step) {
      std::vector<int32_t> next;
      if (pipelined) {
        if (step + 1 < kSteps) decoder.queue_step();
        EXPECT_EQ(decoder.in_flight(), step + 1 < kSteps ? 2 : 1);
        next = decoder.collect();
      } else {
        next = decoder.step();
      }
      for (int b = 0; b < 2; ++b) tokens[b].push_back(next[b]);
    }
    EXPECT_EQ(decoder.in_flight(), 0);
    return tokens;
  };
  const auto one_at_a_time = decode(false);
  EXPECT_EQ(decode(true), one_at_a_time);
  EXPECT_NE(one_at_a_time[0], one_at_a_time[1]);
}

INSTANTIATE_TEST_SUITE_P(Backends, DecoderOnBackend, ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

TEST(Decoder, MisusedStepHalvesAreClearErrors) {
  const ModelConfig c = testing::tiny_config("LlamaForCausalLM");
  auto backend = make_backend("cpu", 0);
  Transformer model(*backend, c, random_weights(c, 9));
  const auto prompts = testing::tiny_prompts(c.vocab_size, {5});
  Sequences s = dense_sequences(*backend, c, 1);
  Decoder decoder(model, s.kvs, SamplingParams{});
  decoder.prefill(0, prompts[0]);
  EXPECT_THROW(decoder.collect(), Error);  // nothing queued
  decoder.queue_step();
  decoder.queue_step();
  EXPECT_THROW(decoder.queue_step(), Error);            // a third step in flight
  EXPECT_THROW(decoder.prefill(0, prompts[0]), Error);  // sampling a prompt under queued steps
  EXPECT_THROW(decoder.step(), Error);                  // step() under queued steps
  decoder.collect();
  decoder.collect();
  EXPECT_EQ(decoder.in_flight(), 0);
}

}  // namespace
}  // namespace kvo
