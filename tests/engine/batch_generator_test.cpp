// Batched generation (engine/batch_generator.h) on the CPU backend: B sequences of different
// prompt lengths decoded together give exactly the greedy tokens of B separate single-sequence
// runs (Transformer::forward one token at a time), for every architecture, through both the
// recordable decode path (attend_at) and the eager one (attend), and with a sparse policy.
#include "engine/batch_generator.h"

#include <gtest/gtest.h>

#include "backend/backend.h"
#include "engine/sampler.h"
#include "kv/kv_spec.h"
#include "model/random_weights.h"
#include "model/tiny_random_model.h"
#include "util/error.h"

namespace kvo {
namespace {

// Greedy tokens of one sequence, one Transformer::forward per token.
std::vector<int32_t> single_greedy(Transformer& model, const KvSpec& spec,
                                   const std::vector<int32_t>& prompt, int new_tokens) {
  auto kv =
      make_kv_policy(model.backend(), model.config(), spec, int64_t(prompt.size()) + new_tokens);
  std::vector<float> logits = model.forward(prompt, 0, *kv, 1);
  kv->finish_prefill();
  std::vector<int32_t> out;
  for (int step = 0; step < new_tokens; ++step) {
    out.push_back(argmax(logits));
    if (step + 1 == new_tokens) break;
    const int32_t next[1] = {out.back()};
    logits = model.forward(next, int64_t(prompt.size()) + step, *kv, 1);
  }
  return out;
}

BatchResult batched(Transformer& model, const KvSpec& spec,
                    const std::vector<std::vector<int32_t>>& prompts, int new_tokens, bool record) {
  std::vector<std::unique_ptr<KvPolicy>> owned;
  std::vector<KvPolicy*> kvs;
  for (const auto& p : prompts) {
    owned.push_back(
        make_kv_policy(model.backend(), model.config(), spec, int64_t(p.size()) + new_tokens));
    kvs.push_back(owned.back().get());
  }
  BatchOptions options;
  options.max_new_tokens = new_tokens;
  options.record = record;
  return generate_batch(model, kvs, prompts, options);
}

TEST(BatchGenerator, GreedyBatchMatchesSeparateRunsForEveryArchitecture) {
  const KvSpec dense = KvSpec::parse("dense").resolved();
  for (const std::string& arch : testing::tiny_archs()) {
    const ModelConfig c = testing::tiny_config(arch);
    auto backend = make_backend("cpu", 0);
    Transformer model(*backend, c, random_weights(c, 3));
    const auto prompts = testing::tiny_prompts(c.vocab_size, {5, 19, 1, 12});
    const int new_tokens = 12;
    for (bool record : {true, false}) {
      const BatchResult r = batched(model, dense, prompts, new_tokens, record);
      EXPECT_FALSE(r.recorded);  // the CPU backend cannot record: queued every step
      ASSERT_EQ(r.tokens.size(), prompts.size());
      for (size_t b = 0; b < prompts.size(); ++b)
        EXPECT_EQ(r.tokens[b], single_greedy(model, dense, prompts[b], new_tokens))
            << arch << " sequence " << b << (record ? " (recordable path)" : " (eager path)");
    }
  }
}

TEST(BatchGenerator, SparsePolicyBatchMatchesSeparateRuns) {
  const ModelConfig c = testing::tiny_config("LlamaForCausalLM");
  auto backend = make_backend("cpu", 0);
  Transformer model(*backend, c, random_weights(c, 4));
  const KvSpec quest = KvSpec::parse("quest:budget=32,page=8,local=8").resolved();
  const auto prompts = testing::tiny_prompts(c.vocab_size, {120, 90});
  const BatchResult r = batched(model, quest, prompts, 8, true);
  for (size_t b = 0; b < prompts.size(); ++b)
    EXPECT_EQ(r.tokens[b], single_greedy(model, quest, prompts[b], 8)) << "sequence " << b;
}

TEST(BatchGenerator, SeededSamplingIsReproducibleAndPerSequence) {
  const ModelConfig c = testing::tiny_config("Qwen3ForCausalLM");
  auto backend = make_backend("cpu", 0);
  Transformer model(*backend, c, random_weights(c, 5));
  const auto prompts = testing::tiny_prompts(c.vocab_size, {7, 7});
  auto run = [&] {
    std::vector<std::unique_ptr<KvPolicy>> owned;
    std::vector<KvPolicy*> kvs;
    for (int b = 0; b < 2; ++b) {
      owned.push_back(make_dense_policy(*backend, c, 40));
      kvs.push_back(owned.back().get());
    }
    BatchOptions options;
    options.max_new_tokens = 30;
    options.sampling = SamplingParams{1.5f, 0, 1.0f, 11};
    return generate_batch(model, kvs, prompts, options).tokens;
  };
  const auto a = run();
  EXPECT_EQ(a, run());
  EXPECT_NE(a[0], a[1]);  // same prompt, seeds 11 and 12
}

TEST(BatchGenerator, TooSmallCacheIsOneClearError) {
  const ModelConfig c = testing::tiny_config("LlamaForCausalLM");
  auto backend = make_backend("cpu", 0);
  Transformer model(*backend, c, random_weights(c, 6));
  auto kv = make_dense_policy(*backend, c, 10);
  KvPolicy* kvs[1] = {kv.get()};
  BatchOptions options;
  options.max_new_tokens = 8;
  EXPECT_THROW(generate_batch(model, kvs, testing::tiny_prompts(c.vocab_size, {5}), options),
               Error);
}

}  // namespace
}  // namespace kvo
