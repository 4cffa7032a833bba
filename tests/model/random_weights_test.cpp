// Random-weight models: deterministic per seed, finite and moderate logits through many layers,
// and the shipped bench/configs parse to the architectures they name.
#include "model/random_weights.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backend/backend.h"
#include "model/tiny_random_model.h"
#include "model/transformer.h"
#include "util/error.h"

namespace kvo {
namespace {

bool same_bytes(const HostTensor& a, const HostTensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

TEST(RandomWeights, SameSeedSameWeightsOtherSeedOthers) {
  const ModelConfig c = testing::tiny_config("Qwen2ForCausalLM");
  const Weights a = random_weights(c, 7), b = random_weights(c, 7), other = random_weights(c, 8);
  EXPECT_TRUE(same_bytes(a.layers[1].wq, b.layers[1].wq));
  EXPECT_TRUE(same_bytes(a.layers[2].bk, b.layers[2].bk));
  EXPECT_FALSE(same_bytes(a.layers[1].wq, other.layers[1].wq));
  EXPECT_FALSE(same_bytes(a.layers[0].w_up, a.layers[1].w_up));  // every tensor its own stream
  EXPECT_EQ(a.layers[0].wq.dtype, DType::BF16);
  ASSERT_EQ(a.layers[0].wk.shape, (std::vector<int64_t>{64, 64}));
  // Standard deviation 1/sqrt(fan_in).
  const std::vector<float> w = a.layers[0].w_down.to_f32();
  double sq = 0;
  for (float x : w) sq += double(x) * x;
  EXPECT_NEAR(std::sqrt(sq / double(w.size())), 1.0 / std::sqrt(96.0), 0.01);
}

TEST(RandomWeights, TiedConfigSharesTheEmbedding) {
  const Weights w = random_weights(testing::tiny_config("LlamaForCausalLM"), 0);
  EXPECT_EQ(w.lm_head.data, w.token_embedding.data);
  EXPECT_TRUE(w.layers[0].bq.empty());
}

TEST(RandomWeights, LogitsStayFiniteAndModerateThroughFortyLayers) {
  for (const std::string& arch : testing::tiny_archs()) {
    const ModelConfig c = testing::tiny_config(arch, 40);
    auto backend = make_backend("cpu", 0);
    Transformer model(*backend, c, random_weights(c, 1));
    auto kv = make_dense_policy(*backend, c, 64);
    std::vector<int32_t> ids(48);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 7 % c.vocab_size);
    const std::vector<float> logits = model.forward(ids, 0, *kv, 4);
    float peak = 0;
    for (float x : logits) {
      ASSERT_TRUE(std::isfinite(x)) << arch;
      peak = std::max(peak, std::fabs(x));
    }
    EXPECT_LT(peak, 50.0f) << arch;
    EXPECT_GT(peak, 0.1f) << arch;
  }
}

TEST(RandomWeights, BenchConfigsParse) {
  struct Expect {
    const char* file;
    Arch arch;
    int layers;
    bool tied;
  };
  for (const Expect& e : {Expect{"llama-3.1-8b.json", Arch::Llama, 32, false},
                          Expect{"llama-3.2-3b.json", Arch::Llama, 28, true},
                          Expect{"qwen3-4b.json", Arch::Qwen3, 36, true},
                          Expect{"qwen3-8b.json", Arch::Qwen3, 36, false}}) {
    const ModelConfig c =
        load_hf_config_file(std::string(KVO_TEST_DATA_DIR) + "/../bench/configs/" + e.file);
    EXPECT_EQ(c.arch, e.arch) << e.file;
    EXPECT_EQ(c.num_layers, e.layers) << e.file;
    EXPECT_EQ(c.tie_word_embeddings, e.tied) << e.file;
    EXPECT_EQ(c.head_dim, 128) << e.file;
  }
}

TEST(RandomWeights, MissingConfigIsOneClearError) {
  EXPECT_THROW(load_random_model("/nonexistent/config.json"), Error);
}

}  // namespace
}  // namespace kvo
