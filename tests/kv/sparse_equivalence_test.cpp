// With a budget covering every prompt token and lossless storage, every sparse policy must
// reproduce dense attention: the logits of the prefill and of several decode steps, and the
// greedy tokens (tiny HF fixtures: Llama with llama3 RoPE, Qwen3, Qwen2; SmolLM2 when present).
// With quantized storage the attention error must stay at the quantizer's level.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "backend/cpu/cpu_backend.h"
#include "kv/kv_policy.h"
#include "model/model.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "quant/hadamard.h"

namespace kvo {
namespace {

const std::string kFixtures = std::string(KVO_TEST_DATA_DIR) + "/fixtures/models/";

struct Run {
  std::vector<std::vector<float>> logits;  // prefill's last row, then one per decode step
  std::vector<int32_t> tokens;             // greedy tokens
};

// Greedy run; `forced` (when non-empty) fixes the decode inputs so logits compare step by step.
Run run(Transformer& model, KvPolicy& kv, const std::vector<int32_t>& prompt, int steps,
        const std::vector<int32_t>& forced) {
  Run r;
  std::vector<float> l = model.forward(prompt, 0, kv, 1, 64);
  kv.finish_prefill();
  int64_t pos = int64_t(prompt.size());
  for (int s = 0; s <= steps; ++s) {
    r.logits.push_back(l);
    const int32_t tok = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
    r.tokens.push_back(tok);
    if (s == steps) break;
    const int32_t in[1] = {forced.empty() ? tok : forced[size_t(s)]};
    l = model.forward(in, pos++, kv, 1);
  }
  return r;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double mx = 1e-6, d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    mx = std::max(mx, double(std::fabs(a[i])));
    d = std::max(d, double(std::fabs(a[i] - b[i])));
  }
  return d / mx;
}

std::vector<int32_t> prompt_for(const ModelConfig& c, int n) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 7919 + 13) % c.vocab_size);
  return ids;
}

void check_lossless(const LoadedModel& m, const std::string& name, int prompt_len, int steps) {
  auto backend = make_cpu_backend(0);
  Transformer model(*backend, m.config, m.weights);
  const std::vector<int32_t> prompt = prompt_for(m.config, prompt_len);
  const int64_t cap = prompt_len + steps + 1;
  auto dense = make_dense_policy(*backend, m.config, cap);
  const Run ref = run(model, *dense, prompt, steps, {});
  const int64_t W = int64_t(m.config.num_kv_heads) * m.config.head_dim;
  const std::vector<std::string> specs = {
      "quest:budget=1.0",
      "quest:budget=1.0,page=8,sinks=3,local=5",
      "yakv:budget=1.0,kv-store=f32,landmarks=f32",
      "yakv:budget=1.0,kv-store=f32,landmarks=bf16,chunk=4,outliers=3,sinks=2",
      "shadowkv:budget=1.0,kv-store=f32,rank=" + std::to_string(W),
      "shadowkv:budget=1.0,kv-store=f32,outliers=0,local=0,rank=" + std::to_string(W),
  };
  for (const std::string& text : specs) {
    SCOPED_TRACE(name + " " + text);
    auto kv = make_kv_policy(*backend, m.config, KvSpec::parse(text), cap);
    const Run got = run(model, *kv, prompt, steps, ref.tokens);
    for (size_t s = 0; s < ref.logits.size(); ++s)
      EXPECT_LE(max_rel_diff(ref.logits[s], got.logits[s]), 2e-5) << "step " << s;
    EXPECT_EQ(got.tokens, ref.tokens);
    // Free-running greedy generation gives the same tokens too.
    auto kv2 = make_kv_policy(*backend, m.config, KvSpec::parse(text), cap);
    EXPECT_EQ(run(model, *kv2, prompt, steps, {}).tokens, ref.tokens);
  }
  // bf16 storage of the offloaded K/V: a rounding of 2^-9 relative per value.
  for (const std::string& text :
       std::vector<std::string>{"yakv:budget=1.0,kv-store=bf16,landmarks=bf16",
                                "shadowkv:budget=1.0,kv-store=bf16,rank=" + std::to_string(W)}) {
    SCOPED_TRACE(name + " " + text);
    auto kv = make_kv_policy(*backend, m.config, KvSpec::parse(text), cap);
    const Run got = run(model, *kv, prompt, steps, ref.tokens);
    for (size_t s = 1; s < ref.logits.size(); ++s)
      EXPECT_LE(max_rel_diff(ref.logits[s], got.logits[s]), 2e-2) << "step " << s;
  }
}

TEST(SparseEquivalence, LosslessFullBudgetMatchesDenseOnFixtures) {
  for (const char* name : {"llama3_scaled", "qwen3", "qwen2"}) {
    LoadedModel m = load_hf_checkpoint(kFixtures + name);
    check_lossless(m, name, 150, 5);
  }
}

TEST(SparseEquivalence, LosslessFullBudgetMatchesDenseOnSmolLM2) {
  const std::string path = std::string(KVO_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "default model not downloaded";
  LoadedModel m = load_gguf_model(path);
  check_lossless(m, "smollm2", 100, 3);
}

// Quantized storage with a full budget: every token is attended (mass 1) and the output error
// is the quantizer's: 4-bit HIGGS (EDEN2-256, MSE 0.0078 per unit value -> ~9% relative) or fp8.
TEST(SparseEquivalence, QuantizedStoreErrorIsTheQuantizers) {
  LoadedModel m = load_hf_checkpoint(kFixtures + "qwen3");
  auto backend = make_cpu_backend(0);
  Transformer model(*backend, m.config, m.weights);
  const std::vector<int32_t> prompt = prompt_for(m.config, 200);
  struct Case {
    const char* spec;
    double max_err;
  };
  for (const Case& c : {Case{"yakv:budget=1.0", 0.2}, Case{"yakv:budget=1.0,kv-store=fp8", 0.08},
                        Case{"yakv:budget=1.0,kv-store=f32", 1e-5},
                        Case{"shadowkv:budget=1.0,kv-store=fp8,rank=128,outliers=0", 0.08}}) {
    SCOPED_TRACE(c.spec);
    auto kv = make_kv_policy(*backend, m.config, KvSpec::parse(c.spec), 202);
    auto* diag = dynamic_cast<KvDiagnosable*>(kv.get());
    ASSERT_NE(diag, nullptr);
    diag->enable_diagnostics();
    model.forward(prompt, 0, *kv, 1, 64);
    kv->finish_prefill();
    const int32_t in[1] = {5};
    model.forward(in, 200, *kv, 1);
    ASSERT_EQ(diag->diagnostics().size(), size_t(m.config.num_layers * m.config.num_kv_heads));
    double worst = 0, mean = 0;
    for (const auto& h : diag->diagnostics()) {
      EXPECT_NEAR(h.mass_covered, 1.0, 1e-9);
      worst = std::max(worst, h.output_rel_error);
      mean += h.output_rel_error / double(diag->diagnostics().size());
    }
    EXPECT_LE(worst, c.max_err);
    std::printf("%s: mean attention-output error %.3g, worst %.3g\n", c.spec, mean, worst);
    if (c.max_err > 1e-3) EXPECT_GT(mean, c.max_err / 100);  // the quantizer is really used
  }
}

}  // namespace
}  // namespace kvo
