// HF config.json parsing: Llama 3.1 with llama3 rope scaling, Qwen3 with rope_parameters
// (transformers v5 style), Qwen2 biases, defaults, and clear errors for what we do not support.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fuzz.h"
#include "model/weights.h"
#include "util/error.h"

namespace kvo {
namespace {

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << haystack

// The published Llama-3.1-8B-Instruct config.json (fields we read, plus some we ignore).
const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "use_cache": true, "vocab_size": 128256})";

// A Qwen3-0.6B-style config as transformers v5 writes it (rope_parameters, explicit head_dim).
const char* kQwen3 = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "bos_token_id": 151643,
  "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
  "intermediate_size": 3072, "max_position_embeddings": 40960, "model_type": "qwen3",
  "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06, "rope_parameters": {"rope_theta": 1000000, "rope_type": "default"},
  "sliding_window": null, "tie_word_embeddings": true, "use_sliding_window": false,
  "vocab_size": 151936})";

TEST(HfConfig, Llama31WithLlama3RopeScaling) {
  ModelConfig c = parse_hf_config(kLlama31, "config.json");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.arch_name, "LlamaForCausalLM");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
  EXPECT_EQ(c.rope_layout, RopeLayout::RotateHalf);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.max_context, 131072);
  EXPECT_EQ(c.bos_id, 128000);
  EXPECT_EQ(c.eos_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.kv_bytes_per_token(), 128 * 1024);  // DESIGN.md §3: 128 KiB per token
}

TEST(HfConfig, Qwen3WithRopeParameters) {
  ModelConfig c = parse_hf_config(kQwen3, "config.json");
  EXPECT_EQ(c.arch, Arch::Qwen3);
  EXPECT_EQ(c.head_dim, 128);  // explicit, not hidden/heads = 64
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::None);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_ids, std::vector<int>{151645});
  EXPECT_EQ(c.max_context, 40960);
}

TEST(HfConfig, Qwen3RopeParametersLlama3AndAttentionBias) {
  auto j = nlohmann::json::parse(kQwen3);
  j["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 5e5},
                          {"factor", 32.0},          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  j["attention_bias"] = true;
  ModelConfig c = parse_hf_config(j.dump(), "config.json");
  EXPECT_FLOAT_EQ(c.rope_theta, 5e5f);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 32.0f);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
}

TEST(HfConfig, Qwen2BiasAndDefaults) {
  auto j = nlohmann::json::parse(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
    "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "vocab_size": 151936, "rope_theta": 1000000.0,
    "rope_scaling": null, "eos_token_id": 151645, "bos_token_id": null})");
  ModelConfig c = parse_hf_config(j.dump(), "config.json");
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 64);  // 896 / 14
  EXPECT_EQ(c.bos_id, -1);
  EXPECT_EQ(c.max_context, 32768);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  j.erase("num_key_value_heads");
  EXPECT_EQ(parse_hf_config(j.dump(), "c").num_kv_heads, 14);
}

TEST(HfConfig, UnsupportedArchitecture) {
  try {
    parse_hf_config(R"({"architectures": ["GPT2LMHeadModel"], "n_embd": 768})", "gpt2/config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "unsupported architecture GPT2LMHeadModel");
    EXPECT_HAS(e.what(), "LlamaForCausalLM");
    EXPECT_HAS(e.what(), "gpt2/config.json");
  }
}

TEST(HfConfig, Errors) {
  auto err = [](const std::string& text) -> std::string {
    try {
      parse_hf_config(text, "config.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_HAS(err("not json"), "not valid JSON");
  EXPECT_HAS(err("[]"), "expected a JSON object");
  EXPECT_HAS(err("{}"), "architectures");

  auto j = nlohmann::json::parse(kLlama31);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_HAS(err(j.dump()), "unsupported rope type \"yarn\"");

  j = nlohmann::json::parse(kLlama31);
  j["rope_scaling"].erase("low_freq_factor");
  EXPECT_HAS(err(j.dump()), "low_freq_factor");

  j = nlohmann::json::parse(kLlama31);
  j.erase("hidden_size");
  EXPECT_HAS(err(j.dump()), "missing \"hidden_size\"");

  j = nlohmann::json::parse(kLlama31);
  j["num_key_value_heads"] = 5;
  EXPECT_HAS(err(j.dump()), "not a multiple of 5 KV heads");

  j = nlohmann::json::parse(kLlama31);
  j["hidden_size"] = "big";
  EXPECT_HAS(err(j.dump()), "must be an integer");

  j = nlohmann::json::parse(kLlama31);
  j["eos_token_id"] = 999999;
  EXPECT_HAS(err(j.dump()), "outside the vocabulary");
}

// Mutated configs (fuzz.h): each parses or raises kvo::Error, never another exception.
TEST(HfConfigFuzz, MutationsParseOrRaiseError) {
  // clang-format off
  const std::vector<std::string> tokens = {
      "{", "}", "[", "]", ",", ":", "\"", " ", "", "null", "true", "false", "0", "-1", "1e999",
      "4096", "131072", "0.5", "2147483648", "\"llama3\"", "\"default\"", "\"yarn\"",
      "\"rope_scaling\"", "\"rope_parameters\"", "\"head_dim\"", "\"num_key_value_heads\"",
      "\"LlamaForCausalLM\"", "\"Qwen3ForCausalLM\"", "\"Qwen2ForCausalLM\"", "\"model_type\""};
  // clang-format on
  int accepted = 0, rejected = 0;
  test::fuzz_texts(
      std::vector<std::string>{kLlama31, kQwen3}, tokens, test::fuzz_seed_or(5),
      [](const std::string& text) { parse_hf_config(text, "config.json"); }, &accepted, &rejected);
  EXPECT_EQ(accepted + rejected, test::fuzz_iterations());
  EXPECT_GT(rejected, test::fuzz_iterations() / 4);
}

}  // namespace
}  // namespace kvo
