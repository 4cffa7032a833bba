// Model loading from HF folders and GGUF files: tiny synthetic checkpoints built in a temp dir
// (every architecture feature, shape checks, missing tensors) and the real default GGUF model.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io_builders.h"
#include "model/tensor.h"
#include "model/weights.h"
#include "util/error.h"

namespace kvo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::Bytes;

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << haystack

// Deterministic, distinct-per-tensor values that survive bf16/f16 rounding exactly.
std::vector<float> values_for(size_t seed, int64_t n) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = float(int64_t((seed * 31 + i * 7) % 64) - 32) / 16.0f;
  return v;
}

Bytes encode(const std::string& dtype, const std::vector<float>& v) {
  Bytes b;
  for (float f : v) {
    if (dtype == "F32")
      test::put<float>(b, f);
    else if (dtype == "F16")
      test::put<uint16_t>(b, f32_to_f16(f));
    else
      test::put<uint16_t>(b, f32_to_bf16(f));
  }
  return b;
}

json tiny_config(const std::string& arch) {
  json j = {{"architectures", {arch}},  {"hidden_size", 16},
            {"intermediate_size", 24},  {"num_hidden_layers", 2},
            {"num_attention_heads", 4}, {"num_key_value_heads", 2},
            {"vocab_size", 20},         {"rms_norm_eps", 1e-6},
            {"rope_theta", 10000.0},    {"max_position_embeddings", 128},
            {"bos_token_id", 1},        {"eos_token_id", 2}};
  if (arch == "Qwen3ForCausalLM") j["head_dim"] = 8;  // q width 32 != hidden 16
  return j;
}

// Every tensor an HF checkpoint of this config holds, with its shape.
std::vector<std::pair<std::string, std::vector<int64_t>>> hf_tensors(const ModelConfig& c,
                                                                     bool with_lm_head) {
  int64_t h = c.hidden_size, q = int64_t(c.num_heads) * c.head_dim,
          kv = int64_t(c.num_kv_heads) * c.head_dim, f = c.intermediate_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out = {
      {"model.embed_tokens.weight", {c.vocab_size, h}}, {"model.norm.weight", {h}}};
  if (with_lm_head) out.push_back({"lm_head.weight", {c.vocab_size, h}});
  for (int i = 0; i < c.num_layers; ++i) {
    std::string p = "model.layers." + std::to_string(i) + ".";
    out.push_back({p + "input_layernorm.weight", {h}});
    out.push_back({p + "self_attn.q_proj.weight", {q, h}});
    out.push_back({p + "self_attn.k_proj.weight", {kv, h}});
    out.push_back({p + "self_attn.v_proj.weight", {kv, h}});
    out.push_back({p + "self_attn.o_proj.weight", {h, q}});
    if (c.qkv_bias) {
      out.push_back({p + "self_attn.q_proj.bias", {q}});
      out.push_back({p + "self_attn.k_proj.bias", {kv}});
      out.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    if (c.qk_norm) {
      out.push_back({p + "self_attn.q_norm.weight", {c.head_dim}});
      out.push_back({p + "self_attn.k_norm.weight", {c.head_dim}});
    }
    out.push_back({p + "post_attention_layernorm.weight", {h}});
    out.push_back({p + "mlp.gate_proj.weight", {f, h}});
    out.push_back({p + "mlp.up_proj.weight", {f, h}});
    out.push_back({p + "mlp.down_proj.weight", {h, f}});
  }
  return out;
}

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// Writes config.json and the weights; `shards` > 1 spreads tensors round-robin over shards.
void write_hf(const fs::path& dir, const json& config, const std::string& dtype, int shards,
              bool with_lm_head, const std::string& skip = "", const std::string& reshape = "") {
  test::write_file(dir / "config.json", config.dump());
  ModelConfig c = parse_hf_config(config.dump(), "config.json");
  std::vector<test::SafetensorsBuilder> b(shards);
  json weight_map;
  size_t k = 0;
  for (auto& [name, shape] : hf_tensors(c, with_lm_head)) {
    if (name == skip) continue;
    std::vector<int64_t> s = shape;
    if (name == reshape) s.back() += 1;
    std::string file =
        shards == 1 ? "model.safetensors"
                    : fmt::format("model-{:05d}-of-{:05d}.safetensors", k % shards + 1, shards);
    b[k % shards].add(name, dtype, s, encode(dtype, values_for(k, numel(s))));
    weight_map[name] = file;
    ++k;
  }
  if (shards == 1) {
    test::write_file(dir / "model.safetensors", b[0].build());
    return;
  }
  for (int i = 0; i < shards; ++i)
    test::write_file(dir / fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards),
                     b[i].build());
  test::write_file(dir / "model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
}

std::string load_error(const fs::path& dir) {
  try {
    load_hf_checkpoint(dir.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LoaderHf, TinyQwen3TiedBf16) {
  test::TempDir dir("hf-qwen3");
  json cfg = tiny_config("Qwen3ForCausalLM");
  cfg["tie_word_embeddings"] = true;
  write_hf(dir.path(), cfg, "BF16", 1, false);
  test::write_file(dir.path() / "generation_config.json",
                   std::string(R"({"eos_token_id": [2, 7], "bos_token_id": 1})"));
  LoadedModel m = load_hf_checkpoint(dir.path().string());
  EXPECT_EQ(m.source_format, "safetensors");
  EXPECT_EQ(m.config.eos_ids, (std::vector<int>{2, 7}));
  EXPECT_TRUE(m.config.qk_norm);
  const Weights& w = m.weights;
  EXPECT_EQ(w.lm_head.data, w.token_embedding.data);  // tied: the same mapped bytes
  EXPECT_EQ(w.token_embedding.dtype, DType::BF16);
  EXPECT_EQ(w.token_embedding.shape, (std::vector<int64_t>{20, 16}));
  ASSERT_EQ(w.layers.size(), 2u);
  EXPECT_EQ(w.layers[1].wq.shape, (std::vector<int64_t>{32, 16}));
  EXPECT_EQ(w.layers[1].wo.shape, (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(w.layers[0].q_norm.shape, std::vector<int64_t>{8});
  EXPECT_TRUE(w.layers[0].bq.empty());
  EXPECT_EQ(w.token_embedding.to_f32(), values_for(0, 20 * 16));
  EXPECT_EQ(w.files.size(), 1u);
}

TEST(LoaderHf, ShardedLlamaUntiedF16) {
  test::TempDir dir("hf-llama");
  write_hf(dir.path(), tiny_config("LlamaForCausalLM"), "F16", 3, true);
  LoadedModel m = load_hf_checkpoint(dir.path().string());
  EXPECT_EQ(m.config.arch, Arch::Llama);
  EXPECT_NE(m.weights.lm_head.data, m.weights.token_embedding.data);
  EXPECT_EQ(m.weights.lm_head.dtype, DType::F16);
  EXPECT_EQ(m.weights.lm_head.to_f32(), values_for(2, 20 * 16));
  EXPECT_EQ(m.weights.files.size(), 3u);
  EXPECT_TRUE(m.weights.layers[0].q_norm.empty());
}

TEST(LoaderHf, Qwen2BiasesF32) {
  test::TempDir dir("hf-qwen2");
  write_hf(dir.path(), tiny_config("Qwen2ForCausalLM"), "F32", 1, true);
  LoadedModel m = load_hf_checkpoint(dir.path().string());
  EXPECT_TRUE(m.config.qkv_bias);
  EXPECT_EQ(m.weights.layers[1].bk.shape, std::vector<int64_t>{8});
  EXPECT_TRUE(m.weights.layers[1].bo.empty());
}

TEST(LoaderHf, Errors) {
  {
    test::TempDir dir("hf-missing");
    write_hf(dir.path(), tiny_config("LlamaForCausalLM"), "F32", 1, true,
             "model.layers.1.mlp.up_proj.weight");
    EXPECT_HAS(load_error(dir.path()), "missing tensor model.layers.1.mlp.up_proj.weight");
  }
  {
    test::TempDir dir("hf-shape");
    write_hf(dir.path(), tiny_config("LlamaForCausalLM"), "F32", 1, true, "",
             "model.layers.0.self_attn.k_proj.weight");
    std::string msg = load_error(dir.path());
    EXPECT_HAS(msg, "model.layers.0.self_attn.k_proj.weight");
    EXPECT_HAS(msg, "shape [8, 17], expected [8, 16]");
  }
  {
    test::TempDir dir("hf-untied");
    write_hf(dir.path(), tiny_config("LlamaForCausalLM"), "F32", 1, false);
    EXPECT_HAS(load_error(dir.path()), "lm_head.weight");
  }
  {
    test::TempDir dir("hf-dtype");
    write_hf(dir.path(), tiny_config("LlamaForCausalLM"), "F32", 1, true);
    test::SafetensorsBuilder b;
    b.add("model.embed_tokens.weight", "I32", {20, 16}, Bytes(20 * 16 * 4));
    test::write_file(dir.path() / "model.safetensors", b.build());
    std::string msg = load_error(dir.path());
    EXPECT_HAS(msg, "model.embed_tokens.weight");
    EXPECT_HAS(msg, "I32");
  }
  {
    test::TempDir dir("hf-noconfig");
    EXPECT_HAS(load_error(dir.path()), "no config.json");
  }
  {
    test::TempDir dir("hf-gpt2");
    test::write_file(dir.path() / "config.json",
                     std::string(R"({"architectures": ["GPT2LMHeadModel"]})"));
    EXPECT_HAS(load_error(dir.path()), "unsupported architecture GPT2LMHeadModel");
  }
}

// A tiny GGUF in llama.cpp's naming; the embedding and wq are Q8_0 to exercise dequantization.
Bytes tiny_gguf(const std::string& arch, bool tied, bool rope_freqs,
                const std::string& rope_scaling = "") {
  const uint64_t h = 32, heads = 4, kv_heads = 2, hd = 8, f = 64, vocab = 6, layers = 1;
  test::GgufBuilder b;
  std::string p = arch + ".";
  b.kv_str("general.architecture", arch)
      .kv<uint32_t>(p + "block_count", test::kU32, layers)
      .kv<uint32_t>(p + "context_length", test::kU32, 256)
      .kv<uint32_t>(p + "embedding_length", test::kU32, h)
      .kv<uint32_t>(p + "feed_forward_length", test::kU32, f)
      .kv<uint32_t>(p + "attention.head_count", test::kU32, heads)
      .kv<uint32_t>(p + "attention.head_count_kv", test::kU32, kv_heads)
      .kv<float>(p + "attention.layer_norm_rms_epsilon", test::kF32, 1e-5f)
      .kv<float>(p + "rope.freq_base", test::kF32, 500000.0f)
      .kv_str_array("tokenizer.ggml.tokens", {"a", "b", "c", "d", "e", "f"})
      .kv<uint32_t>("tokenizer.ggml.bos_token_id", test::kU32, 0)
      .kv<uint32_t>("tokenizer.ggml.eos_token_id", test::kU32, 4)
      .kv<uint32_t>("tokenizer.ggml.eot_token_id", test::kU32, 5);
  if (!rope_scaling.empty()) {
    b.kv_str(p + "rope.scaling.type", rope_scaling);
    b.kv<float>(p + "rope.scaling.factor", test::kF32, 4.0f);
  }
  // Q8_0 rows: 32 elements per block; row r has d = 0.5 and quants (r + j) % 7 - 3.
  auto q8 = [](uint64_t rows) {
    Bytes data;
    for (uint64_t r = 0; r < rows; ++r) {
      test::put<uint16_t>(data, f32_to_f16(0.5f));
      for (int j = 0; j < 32; ++j) data.push_back(uint8_t(int8_t((r + j) % 7 - 3)));
    }
    return data;
  };
  auto f32 = [](uint64_t n, float v) { return std::vector<float>(n, v); };
  auto f16 = [](uint64_t n) {
    Bytes d;
    for (uint64_t i = 0; i < n; ++i) test::put<uint16_t>(d, f32_to_f16(float(i % 5)));
    return d;
  };
  b.tensor("token_embd.weight", {h, vocab}, uint32_t(GgmlType::Q8_0), q8(vocab));
  b.tensor_f32("output_norm.weight", {h}, f32(h, 1.0f));
  if (!tied) b.tensor("output.weight", {h, vocab}, uint32_t(GgmlType::F16), f16(h * vocab));
  if (rope_freqs) b.tensor_f32("rope_freqs.weight", {hd / 2}, {1.0f, 2.0f, 4.0f, 8.0f});
  b.tensor_f32("blk.0.attn_norm.weight", {h}, f32(h, 1.0f))
      .tensor("blk.0.attn_q.weight", {h, heads * hd}, uint32_t(GgmlType::Q8_0), q8(heads * hd))
      .tensor("blk.0.attn_k.weight", {h, kv_heads * hd}, 1, f16(h * kv_heads * hd))
      .tensor("blk.0.attn_v.weight", {h, kv_heads * hd}, 1, f16(h * kv_heads * hd))
      .tensor("blk.0.attn_output.weight", {heads * hd, h}, 1, f16(h * heads * hd))
      .tensor_f32("blk.0.ffn_norm.weight", {h}, f32(h, 1.0f))
      .tensor("blk.0.ffn_gate.weight", {h, f}, 1, f16(h * f))
      .tensor("blk.0.ffn_up.weight", {h, f}, 1, f16(h * f))
      .tensor("blk.0.ffn_down.weight", {f, h}, 1, f16(h * f));
  if (arch == "qwen3") {
    b.tensor_f32("blk.0.attn_q_norm.weight", {hd}, f32(hd, 1.0f));
    b.tensor_f32("blk.0.attn_k_norm.weight", {hd}, f32(hd, 1.0f));
  }
  if (arch == "qwen2") {
    b.tensor_f32("blk.0.attn_q.bias", {heads * hd}, f32(heads * hd, 0.5f));
    b.tensor_f32("blk.0.attn_k.bias", {kv_heads * hd}, f32(kv_heads * hd, 0.5f));
    b.tensor_f32("blk.0.attn_v.bias", {kv_heads * hd}, f32(kv_heads * hd, 0.5f));
  }
  return b.build();
}

TEST(LoaderGguf, TinyLlamaQ8Tied) {
  test::TempDir dir("gguf-llama");
  fs::path path = dir.path() / "tiny.gguf";
  test::write_file(path, tiny_gguf("llama", true, true));
  LoadedModel m = load_gguf_model(path.string());
  const ModelConfig& c = m.config;
  EXPECT_EQ(m.source_format, "gguf");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.rope_layout, RopeLayout::AdjacentPairs);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 6);
  EXPECT_EQ(c.max_context, 256);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_freq_factors, (std::vector<float>{1, 2, 4, 8}));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_id, 0);
  EXPECT_EQ(c.eos_ids, (std::vector<int>{4, 5}));
  const Weights& w = m.weights;
  EXPECT_EQ(w.lm_head.data, w.token_embedding.data);
  EXPECT_EQ(w.token_embedding.dtype, DType::F32);  // dequantized
  EXPECT_EQ(w.token_embedding.shape, (std::vector<int64_t>{6, 32}));
  std::vector<float> emb = w.token_embedding.to_f32();
  for (int r = 0; r < 6; ++r)
    for (int j = 0; j < 32; ++j) EXPECT_EQ(emb[r * 32 + j], 0.5f * ((r + j) % 7 - 3));
  EXPECT_EQ(w.layers[0].wq.shape, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(w.layers[0].wk.dtype, DType::F16);  // used in place
  EXPECT_EQ(w.layers[0].wk.shape, (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(w.layers[0].w_down.shape, (std::vector<int64_t>{32, 64}));
}

TEST(LoaderGguf, TinyQwen3AndQwen2) {
  test::TempDir dir("gguf-qwen");
  fs::path path = dir.path() / "q3.gguf";
  test::write_file(path, tiny_gguf("qwen3", false, false));
  LoadedModel m = load_gguf_model(path.string());
  EXPECT_EQ(m.config.arch, Arch::Qwen3);
  EXPECT_EQ(m.config.rope_layout, RopeLayout::RotateHalf);
  EXPECT_TRUE(m.config.qk_norm);
  EXPECT_FALSE(m.config.tie_word_embeddings);
  EXPECT_EQ(m.weights.lm_head.dtype, DType::F16);
  EXPECT_EQ(m.weights.layers[0].k_norm.shape, std::vector<int64_t>{8});

  test::write_file(path, tiny_gguf("qwen2", false, false));
  m = load_gguf_model(path.string());
  EXPECT_TRUE(m.config.qkv_bias);
  EXPECT_EQ(m.weights.layers[0].bq.to_f32(), std::vector<float>(32, 0.5f));
}

TEST(LoaderGguf, Errors) {
  test::TempDir dir("gguf-err");
  fs::path path = dir.path() / "x.gguf";
  auto err = [&]() -> std::string {
    try {
      load_gguf_model(path.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  test::write_file(path, test::GgufBuilder().kv_str("general.architecture", "gpt2").build());
  EXPECT_HAS(err(), "unsupported architecture gpt2");

  test::write_file(path, tiny_gguf("qwen2", false, false, "yarn"));
  EXPECT_HAS(err(), "unsupported rope scaling type yarn");

  Bytes ok = tiny_gguf("llama", true, false);
  test::write_file(path, Bytes(ok.begin(), ok.end() - 100));
  EXPECT_HAS(err(), "truncated GGUF file");

  Bytes bad = ok;
  bad[3] = 'X';
  test::write_file(path, bad);
  EXPECT_HAS(err(), "not a GGUF file");
}

const std::string kDefaultModel =
    std::string(KVO_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

TEST(LoaderGguf, DefaultModelSmolLM2) {
  if (!fs::exists(kDefaultModel)) GTEST_SKIP() << "run scripts/setup to fetch " << kDefaultModel;
  LoadedModel m = load_gguf_model(kDefaultModel);
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.max_context, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_layout, RopeLayout::AdjacentPairs);
  EXPECT_FALSE(c.eos_ids.empty());
  // bench/configs/smollm2-135m.json (`--random-weights`) is this model's shape.
  const ModelConfig r =
      load_hf_config_file(std::string(KVO_SOURCE_DIR) + "/bench/configs/smollm2-135m.json");
  EXPECT_EQ(r.arch, c.arch);
  EXPECT_EQ(r.num_layers, c.num_layers);
  EXPECT_EQ(r.hidden_size, c.hidden_size);
  EXPECT_EQ(r.intermediate_size, c.intermediate_size);
  EXPECT_EQ(r.num_heads, c.num_heads);
  EXPECT_EQ(r.num_kv_heads, c.num_kv_heads);
  EXPECT_EQ(r.head_dim, c.head_dim);
  EXPECT_EQ(r.vocab_size, c.vocab_size);
  EXPECT_EQ(r.max_context, c.max_context);
  EXPECT_EQ(r.tie_word_embeddings, c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(r.rope_theta, c.rope_theta);
  EXPECT_FLOAT_EQ(r.rms_norm_eps, c.rms_norm_eps);
  const Weights& w = m.weights;
  EXPECT_EQ(w.lm_head.data, w.token_embedding.data);
  EXPECT_EQ(w.token_embedding.shape, (std::vector<int64_t>{49152, 576}));
  ASSERT_EQ(w.layers.size(), 30u);
  EXPECT_EQ(w.layers[29].wk.shape, (std::vector<int64_t>{192, 576}));
  EXPECT_EQ(w.layers[29].w_down.shape, (std::vector<int64_t>{576, 1536}));
  // Dequantized weights are finite and not all zero.
  std::vector<float> wq = w.layers[0].wq.to_f32();
  double sum_sq = 0;
  for (float x : wq) {
    ASSERT_TRUE(std::isfinite(x));
    sum_sq += double(x) * x;
  }
  EXPECT_GT(sum_sq, 0.0);
}

}  // namespace
}  // namespace kvo

namespace kvo {
namespace {

// The transformers-written tiny checkpoints of the oracle tests (tests/oracle/) are real HF
// output: sharded F16 Qwen2, tied BF16 Qwen3, llama3-scaled F32 Llama.
TEST(LoaderHf, TransformersWrittenFixtures) {
  const std::string root = std::string(KVO_TEST_DATA_DIR) + "/fixtures/models/";
  if (!fs::exists(root + "qwen2/config.json")) GTEST_SKIP() << "no oracle fixtures";
  LoadedModel q2 = load_hf_checkpoint(root + "qwen2");
  EXPECT_TRUE(q2.config.qkv_bias);
  EXPECT_EQ(q2.weights.files.size(), 2u);
  LoadedModel q3 = load_hf_checkpoint(root + "qwen3");
  EXPECT_TRUE(q3.config.qk_norm);
  EXPECT_EQ(q3.weights.lm_head.data, q3.weights.token_embedding.data);
  LoadedModel l = load_hf_checkpoint(root + "llama3_scaled");
  EXPECT_EQ(l.config.rope_scaling.type, RopeScaling::Type::Llama3);
}

}  // namespace
}  // namespace kvo
