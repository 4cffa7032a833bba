// SmolLM2-135M-Instruct (the default GGUF, Q4_1/Q8_0 dequantized to fp32) against HF
// transformers running the same dequantized weights (tests/oracle/make_model_fixtures.py smol):
// chat rendering, prompt token ids, the prompt's last logits and 32 greedy tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "cli/run_command.h"
#include "engine/sampler.h"
#include "kv/kv_policy.h"
#include "model/model.h"
#include "model/transformer.h"

namespace kvo {
namespace {

class SmolLM2Greedy : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = testing::default_model_path();
    if (!std::filesystem::exists(path)) return;
    model_ = new Model(load_model(path));
    backend_ = make_cpu_backend(0).release();
    transformer_ = new Transformer(*backend_, model_->config, model_->weights);
    std::ifstream in(std::string(KVO_TEST_DATA_DIR) + "/fixtures/models/smollm2_greedy.json");
    fixture_ = new nlohmann::json(nlohmann::json::parse(in));
  }
  static void TearDownTestSuite() {
    delete transformer_;
    delete backend_;
    delete model_;
    delete fixture_;
  }
  void SetUp() override {
    if (!model_) GTEST_SKIP() << "default model not downloaded";
  }
  static Model* model_;
  static Backend* backend_;
  static Transformer* transformer_;
  static nlohmann::json* fixture_;
};
Model* SmolLM2Greedy::model_ = nullptr;
Backend* SmolLM2Greedy::backend_ = nullptr;
Transformer* SmolLM2Greedy::transformer_ = nullptr;
nlohmann::json* SmolLM2Greedy::fixture_ = nullptr;

TEST_F(SmolLM2Greedy, ChatPromptRendersAndTokenizesLikeTransformers) {
  EXPECT_EQ(model_->chat_format, ChatFormat::ChatML);
  for (const auto& p : (*fixture_)["prompts"]) {
    const std::string rendered = render_chat(model_->chat_format, {{"user", p["user"]}});
    EXPECT_EQ(rendered, p["rendered"].get<std::string>());
    EXPECT_EQ(model_->tokenizer.encode(rendered), p["prompt_ids"].get<std::vector<int32_t>>());
  }
}

TEST_F(SmolLM2Greedy, PromptLogitsMatchTransformers) {
  const auto& p = (*fixture_)["prompts"][0];
  const auto ids = p["prompt_ids"].get<std::vector<int32_t>>();
  const auto expected = p["prompt_last_logits"].get<std::vector<float>>();
  auto kv = make_dense_policy(*backend_, model_->config, int64_t(ids.size()));
  const auto logits = transformer_->forward(ids, 0, *kv, 1);
  ASSERT_EQ(logits.size(), expected.size());
  float max_diff = 0;
  for (size_t i = 0; i < logits.size(); ++i)
    max_diff = std::max(max_diff, std::fabs(logits[i] - expected[i]));
  // Logits reach ~25; fp32 summation-order noise measured between correct runs is ~5e-5.
  EXPECT_LE(max_diff, 2e-3f);
}

TEST_F(SmolLM2Greedy, First32GreedyTokensMatchTransformers) {
  for (const auto& p : (*fixture_)["prompts"]) {
    const auto ids = p["prompt_ids"].get<std::vector<int32_t>>();
    const auto expected = p["generated_ids"].get<std::vector<int32_t>>();
    const auto margins = p["top2_margin"].get<std::vector<float>>();
    auto kv = make_dense_policy(*backend_, model_->config, int64_t(ids.size() + expected.size()));
    auto logits = transformer_->forward(ids, 0, *kv, 1);
    std::vector<int32_t> got;
    for (size_t step = 0; step < expected.size(); ++step) {
      got.push_back(argmax(logits));
      if (got.back() != expected[step]) {
        ADD_FAILURE() << p["user"] << ": step " << step << " got " << got.back() << " expected "
                      << expected[step] << " (HF top-2 margin " << margins[step] << ")";
        break;
      }
      const int32_t next[1] = {got.back()};
      logits = transformer_->forward(next, int64_t(ids.size() + step), *kv, 1);
    }
  }
}

}  // namespace
}  // namespace kvo
