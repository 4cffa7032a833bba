// Batched decode on the CUDA backend: the step replayed from a recording (CUDA graph) gives the
// same tokens as queuing it eagerly, for every architecture (contexts under 512 keys, so both
// paths run the attention without a key split and compute bit-identical results). The split
// decode at a device-side position is checked op by op in cuda_step_ops_test. Skipped where no
// GPU is present.
#include <gtest/gtest.h>

#include <cstdio>

#include "backend/backend.h"
#include "engine/batch_generator.h"
#include "model/random_weights.h"
#include "model/tiny_random_model.h"

namespace kvo {
namespace {

std::unique_ptr<Backend> cuda_or_null() {
  auto b = make_backend("auto", 0);
  return b->name() == "cuda" ? std::move(b) : nullptr;
}

BatchResult run(Transformer& model, const std::vector<std::vector<int32_t>>& prompts,
                int new_tokens, bool record, int64_t capacity) {
  std::vector<std::unique_ptr<KvPolicy>> owned;
  std::vector<KvPolicy*> kvs;
  for (size_t b = 0; b < prompts.size(); ++b) {
    owned.push_back(make_dense_policy(model.backend(), model.config(), capacity));
    kvs.push_back(owned.back().get());
  }
  BatchOptions options;
  options.max_new_tokens = new_tokens;
  options.record = record;
  return generate_batch(model, kvs, prompts, options);
}

TEST(CudaBatchDecode, RecordedStepsGiveTheTokensOfEagerSteps) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  for (const std::string& arch : testing::tiny_archs()) {
    const ModelConfig c = testing::tiny_config(arch);
    Transformer model(*cuda, c, random_weights(c, 3));
    const auto prompts = testing::tiny_prompts(c.vocab_size, {5, 40, 1, 77});
    const BatchResult graph = run(model, prompts, 24, true, 200);
    const BatchResult eager = run(model, prompts, 24, false, 200);
    EXPECT_TRUE(graph.recorded) << arch;
    EXPECT_FALSE(eager.recorded) << arch;
    EXPECT_EQ(graph.tokens, eager.tokens) << arch;
    // Alone, a sequence's decode GEMMs have 1 row instead of 4 (cuBLAS may pick another
    // kernel, so bf16 logits can differ in the last bit and flip a near-tie later on): the
    // first token (prefill) must match exactly; the agreeing prefix is reported.
    for (size_t b = 0; b < prompts.size(); ++b) {
      const BatchResult alone = run(model, {prompts[b]}, 24, true, 200);
      EXPECT_EQ(alone.tokens[0][0], graph.tokens[b][0]) << arch << " sequence " << b;
      size_t agree = 0;
      while (agree < 24 && alone.tokens[0][agree] == graph.tokens[b][agree]) ++agree;
      std::printf("%s sequence %zu: alone and batched agree on %zu/24 tokens\n", arch.c_str(), b,
                  agree);
    }
  }
}

// More sequences than the matvec kernel takes rows (kMatvecRows = 2): the recorded step's
// projections are cuBLAS GEMMs (the residual adds with beta 1, the norms in their own kernels,
// their scratch allocated while recording); RoPE with the K/V append and the attention run once
// for the batch (Backend::rope_store_attention_batch_at).
TEST(CudaBatchDecode, RecordedStepsOfTenSequencesGiveTheTokensOfEagerSteps) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  for (const std::string& arch : testing::tiny_archs()) {
    const ModelConfig c = testing::tiny_config(arch);
    Transformer model(*cuda, c, random_weights(c, 4));
    const auto prompts = testing::tiny_prompts(c.vocab_size, {3, 9, 1, 30, 64, 2, 17, 5, 120, 8});
    const BatchResult graph = run(model, prompts, 12, true, 160);
    const BatchResult eager = run(model, prompts, 12, false, 160);
    EXPECT_TRUE(graph.recorded) << arch;
    EXPECT_EQ(graph.tokens, eager.tokens) << arch;
  }
}

}  // namespace
}  // namespace kvo
