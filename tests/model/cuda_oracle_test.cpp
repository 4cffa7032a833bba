// The model oracles of the foundation issue on the CUDA backend (bf16 weights and activations):
//  - tiny random-weight Llama3-scaled / Qwen3 / Qwen2 checkpoints against HF fp32 logits;
//  - SmolLM2-135M greedy continuations against HF (where the default model is present).
//
// Tolerance. bf16 keeps 8 significant bits: every weight, activation and the residual stream is
// rounded to ~2^-9 relative (each single op measures ~2e-3 rel-L2 in cuda_ops_test), and these
// roundings add up over the layers; the largest of 512 x 16 logit errors then lands at a few
// percent of the logit scale. Measured on the H200 (bench/RESULTS.md, "CUDA backend"):
// llama3_scaled 3.2e-2, qwen3 1.5e-2, qwen2 4.3e-2 of max(1, max|logit|), identical for one-shot
// prefill, 64-token chunks and decode steps (a wrong mask, RoPE, bias or KV offset gives O(1) and
// would differ between those paths). We allow 6e-2, and require the same argmax wherever HF's
// top-2 margin exceeds 2x that bound (then no error within the bound can flip it).
// Skipped where no GPU is present.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "cli/run_command.h"
#include "engine/sampler.h"
#include "kv/kv_policy.h"
#include "model/logit_fixture.h"
#include "model/model.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace kvo {
namespace {

std::unique_ptr<Backend> cuda_or_null() {
  auto b = make_backend("auto", 0);
  return b->name() == "cuda" ? std::move(b) : nullptr;
}

constexpr float kRelTol = 6e-2f;

using Fixture = testing::LogitFixture;
const auto load_fixture = testing::load_logit_fixture;

void expect_logits_match(const Fixture& f, const std::vector<float>& all, int64_t first_row,
                         const std::string& what) {
  const int64_t vocab = f.model.config.vocab_size;
  float worst = 0;
  int checked_argmax = 0, skipped_argmax = 0;
  for (size_t i = 0; i < f.positions.size(); ++i) {
    const int64_t row = f.positions[i] - first_row;
    if (row < 0) continue;
    float scale = 1.0f, max_diff = 0.0f;
    for (int64_t v = 0; v < vocab; ++v) {
      scale = std::max(scale, std::fabs(f.logits[i][v]));
      max_diff = std::max(max_diff, std::fabs(all[row * vocab + v] - f.logits[i][v]));
    }
    worst = std::max(worst, max_diff / scale);
    EXPECT_LE(max_diff, kRelTol * scale) << what << " position " << f.positions[i];
    const auto& ref = f.logits[i];
    const int64_t ref_top = std::max_element(ref.begin(), ref.end()) - ref.begin();
    const auto ours = all.begin() + row * vocab;
    if (f.margins[f.positions[i]] > 2 * kRelTol * scale) {
      ++checked_argmax;
      EXPECT_EQ(std::max_element(ours, ours + vocab) - ours, ref_top)
          << what << " position " << f.positions[i];
    } else {
      ++skipped_argmax;
    }
  }
  std::printf(
      "  %-28s max |cuda - hf| / max(1, max|hf|) = %.2e; argmax checked at %d positions "
      "(%d near-ties skipped)\n",
      what.c_str(), worst, checked_argmax, skipped_argmax);
}

class CudaOracleLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaOracleLogits, PrefillAndDecodeMatchTransformers) {
  auto backend = cuda_or_null();
  if (!backend) GTEST_SKIP() << "no CUDA GPU";
  Fixture f = load_fixture(GetParam());
  Transformer model(*backend, f.model.config, f.model.weights);
  const int64_t n = static_cast<int64_t>(f.ids.size());
  for (int64_t chunk : {int64_t{512}, int64_t{64}}) {
    auto kv = make_dense_policy(*backend, f.model.config, n);
    std::vector<float> all = model.forward(f.ids, 0, *kv, n, chunk);
    expect_logits_match(f, all, 0, GetParam() + " prefill chunk " + std::to_string(chunk));
  }
  const int64_t prefix = n - 24;
  auto kv = make_dense_policy(*backend, f.model.config, n);
  model.forward(std::span(f.ids).first(prefix), 0, *kv, 0);
  std::vector<float> steps;
  for (int64_t p = prefix; p < n; ++p) {
    auto logits = model.forward(std::span(f.ids).subspan(p, 1), p, *kv, 1);
    steps.insert(steps.end(), logits.begin(), logits.end());
  }
  expect_logits_match(f, steps, prefix, GetParam() + " decode");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaOracleLogits,
                         ::testing::Values("llama3_scaled", "qwen3", "qwen2"));

// SmolLM2: teacher-forced over HF's 32 greedy tokens (every step is compared, none is lost to an
// earlier divergence), then free-running greedy; any step where our argmax differs from HF's
// token must be a near-tie in HF's own logits (top-2 margin below kTieMargin).
TEST(CudaSmolLM2, GreedyMatchesTransformersExceptAtNearTies) {
  auto backend = cuda_or_null();
  if (!backend) GTEST_SKIP() << "no CUDA GPU";
  const std::string path = testing::default_model_path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "default model not downloaded";
  constexpr float kTieMargin = 0.5f;  // logits reach ~25; bf16 moves them by ~0.1
  Model model = load_model(path);
  Transformer tf(*backend, model.config, model.weights);
  std::ifstream in(std::string(KVO_TEST_DATA_DIR) + "/fixtures/models/smollm2_greedy.json");
  const nlohmann::json fixture = nlohmann::json::parse(in);
  for (const auto& p : fixture["prompts"]) {
    const auto ids = p["prompt_ids"].get<std::vector<int32_t>>();
    const auto expected = p["generated_ids"].get<std::vector<int32_t>>();
    const auto margins = p["top2_margin"].get<std::vector<float>>();
    auto kv = make_dense_policy(*backend, model.config, int64_t(ids.size() + expected.size()));
    auto logits = tf.forward(ids, 0, *kv, 1);
    if (p.contains("prompt_last_logits")) {
      const auto ref = p["prompt_last_logits"].get<std::vector<float>>();
      float max_diff = 0;
      for (size_t i = 0; i < ref.size(); ++i)
        max_diff = std::max(max_diff, std::fabs(logits[i] - ref[i]));
      std::printf("  prompt last logits: max |cuda - hf| = %.3f\n", max_diff);
    }
    int mismatches = 0;
    for (size_t step = 0; step < expected.size(); ++step) {
      const int32_t ours = argmax(logits);
      if (ours != expected[step]) {
        ++mismatches;
        std::printf("  teacher-forced step %zu: cuda %d, hf %d, hf top-2 margin %.3f\n", step, ours,
                    expected[step], margins[step]);
        EXPECT_LT(margins[step], kTieMargin) << "step " << step;
      }
      const int32_t next[1] = {expected[step]};
      logits = tf.forward(next, int64_t(ids.size() + step), *kv, 1);
    }
    // Free-running greedy: report the first divergence, if any.
    auto kv2 = make_dense_policy(*backend, model.config, int64_t(ids.size() + expected.size()));
    logits = tf.forward(ids, 0, *kv2, 1);
    size_t matched = 0;
    for (; matched < expected.size(); ++matched) {
      const int32_t ours = argmax(logits);
      if (ours != expected[matched]) break;
      const int32_t next[1] = {ours};
      logits = tf.forward(next, int64_t(ids.size() + matched), *kv2, 1);
    }
    std::printf(
        "  prompt '%.30s...': greedy matches %zu/%zu tokens%s (teacher-forced mismatches: %d)\n",
        p["user"].get<std::string>().c_str(), matched, expected.size(),
        matched < expected.size() ? fmt::format(", first divergence at step {} (hf margin {:.3f})",
                                                matched, margins[matched])
                                        .c_str()
                                  : "",
        mismatches);
  }
}

}  // namespace
}  // namespace kvo
