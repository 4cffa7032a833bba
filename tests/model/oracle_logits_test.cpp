// Logits of tiny random-weight models (Llama with llama3 RoPE scaling, Qwen3, Qwen2) against
// HF transformers in fp32 (fixtures made by tests/oracle/make_model_fixtures.py).
//
// Tolerance: both sides compute in fp32 but sum in different orders (BLAS blocking, our online
// softmax), which moves logits by ~1e-6..1e-5 relative over a few layers. We allow 1e-4 of the
// largest logit magnitude: far below what a wrong RoPE pairing, norm or mask produces (O(0.1..1)).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "kv/kv_policy.h"
#include "model/logit_fixture.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace kvo {
namespace {

using Fixture = testing::LogitFixture;
const auto load_fixture = testing::load_logit_fixture;

// Compares the rows of `all` (n, vocab) at the fixture's positions.
void expect_logits_match(const Fixture& f, const std::vector<float>& all, int64_t first_row) {
  const int64_t vocab = f.model.config.vocab_size;
  for (size_t i = 0; i < f.positions.size(); ++i) {
    const int64_t row = f.positions[i] - first_row;
    if (row < 0) continue;
    float max_abs = 1.0f, max_diff = 0.0f;
    for (int64_t v = 0; v < vocab; ++v) {
      max_abs = std::max(max_abs, std::fabs(f.logits[i][v]));
      max_diff = std::max(max_diff, std::fabs(all[row * vocab + v] - f.logits[i][v]));
    }
    EXPECT_LE(max_diff, 1e-4f * max_abs) << "position " << f.positions[i];
    // The top token must agree wherever HF's top-2 margin is not a near-tie.
    const auto& ref = f.logits[i];
    const int64_t ref_top = std::max_element(ref.begin(), ref.end()) - ref.begin();
    const auto ours = all.begin() + row * vocab;
    if (f.margins[f.positions[i]] > 1e-3f)
      EXPECT_EQ(std::max_element(ours, ours + vocab) - ours, ref_top)
          << "position " << f.positions[i];
  }
}

class OracleLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(OracleLogits, PrefillMatchesTransformers) {
  Fixture f = load_fixture(GetParam());
  auto backend = make_cpu_backend(0);
  Transformer model(*backend, f.model.config, f.model.weights);
  const int64_t n = static_cast<int64_t>(f.ids.size());
  for (int64_t chunk : {int64_t{512}, int64_t{64}}) {  // one chunk, then many chunks
    auto kv = make_dense_policy(*backend, f.model.config, n);
    std::vector<float> all = model.forward(f.ids, 0, *kv, n, chunk);
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    expect_logits_match(f, all, 0);
  }
}

TEST_P(OracleLogits, DecodeStepsMatchTransformers) {
  Fixture f = load_fixture(GetParam());
  auto backend = make_cpu_backend(0);
  Transformer model(*backend, f.model.config, f.model.weights);
  const int64_t n = static_cast<int64_t>(f.ids.size());
  const int64_t prefix = n - 24;  // prefill most of it, then one token at a time
  auto kv = make_dense_policy(*backend, f.model.config, n);
  model.forward(std::span(f.ids).first(prefix), 0, *kv, 0);
  std::vector<float> steps;
  for (int64_t p = prefix; p < n; ++p) {
    auto logits = model.forward(std::span(f.ids).subspan(p, 1), p, *kv, 1);
    steps.insert(steps.end(), logits.begin(), logits.end());
  }
  expect_logits_match(f, steps, prefix);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OracleLogits,
                         ::testing::Values("llama3_scaled", "qwen3", "qwen2"));

}  // namespace
}  // namespace kvo
