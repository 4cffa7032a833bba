// ModelConfig checks and the HF config.json reader. Defaults mirror the transformers config
// classes (LlamaConfig, Qwen2Config, Qwen3Config) so that a minimal config means the same here.
#include "model/config.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "model/weights.h"
#include "util/error.h"

namespace kvo {

const char* arch_name(Arch arch) {
  switch (arch) {
    case Arch::Llama:
      return "llama";
    case Arch::Qwen2:
      return "qwen2";
    case Arch::Qwen3:
      return "qwen3";
  }
  return "?";
}

void ModelConfig::validate() const {
  const char* a = arch_name.empty() ? kvo::arch_name(arch) : arch_name.c_str();
  auto positive = [&](int v, const char* what) {
    check(v > 0, "model config ({}): {} must be positive, got {}", a, what, v);
  };
  positive(vocab_size, "vocab size");
  positive(hidden_size, "hidden size");
  positive(intermediate_size, "intermediate size");
  positive(num_layers, "layer count");
  positive(num_heads, "attention head count");
  positive(num_kv_heads, "KV head count");
  positive(head_dim, "head_dim");
  positive(max_context, "context length");
  check(num_heads % num_kv_heads == 0,
        "model config ({}): {} attention heads are not a multiple of {} KV heads", a, num_heads,
        num_kv_heads);
  check(head_dim % 2 == 0, "model config ({}): head_dim {} must be even for RoPE", a, head_dim);
  // Keeps every weight's element count comfortably inside int64 and catches garbage metadata.
  check(num_layers <= 4096 && int64_t(num_heads) * head_dim <= (int64_t{1} << 20) &&
            hidden_size <= (1 << 20) && intermediate_size <= (1 << 22),
        "model config ({}): implausibly large dimensions", a);
  check(rms_norm_eps > 0.0f && rms_norm_eps < 1.0f,
        "model config ({}): rms_norm_eps {} out of range", a, rms_norm_eps);
  check(rope_theta > 0.0f, "model config ({}): rope theta must be positive, got {}", a, rope_theta);
  if (rope_scaling.type == RopeScaling::Type::Llama3) {
    check(rope_scaling.factor >= 1.0f && rope_scaling.low_freq_factor > 0.0f &&
              rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
              rope_scaling.original_max_position > 0,
          "model config ({}): invalid llama3 rope scaling (factor {}, low_freq_factor {}, "
          "high_freq_factor {}, original_max_position_embeddings {})",
          a, rope_scaling.factor, rope_scaling.low_freq_factor, rope_scaling.high_freq_factor,
          rope_scaling.original_max_position);
  }
  check(rope_freq_factors.empty() || int(rope_freq_factors.size()) == head_dim / 2,
        "model config ({}): {} rope frequency factors, expected head_dim/2 = {}", a,
        rope_freq_factors.size(), head_dim / 2);
  for (float f : rope_freq_factors)
    check(f > 0.0f, "model config ({}): rope frequency factors must be positive", a);
  check(bos_id < vocab_size, "model config ({}): bos token id {} is outside the vocabulary of {}",
        a, bos_id, vocab_size);
  for (int id : eos_ids)
    check(id >= 0 && id < vocab_size,
          "model config ({}): eos token id {} is outside the vocabulary of {}", a, id, vocab_size);
}

namespace {

using json = nlohmann::json;

const char* kSupported = "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM";

int get_int(const json& j, const char* key, const std::string& where, std::optional<int> def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (!def) fail("{}: missing \"{}\"", where, key);
    return *def;
  }
  check(it->is_number_integer(), "{}: \"{}\" must be an integer", where, key);
  int64_t v = it->get<int64_t>();
  check(v >= std::numeric_limits<int>::min() && v <= std::numeric_limits<int>::max(),
        "{}: \"{}\" = {} is out of range", where, key, v);
  return static_cast<int>(v);
}

double get_num(const json& j, const char* key, const std::string& where,
               std::optional<double> def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (!def) fail("{}: missing \"{}\"", where, key);
    return *def;
  }
  check(it->is_number(), "{}: \"{}\" must be a number", where, key);
  return it->get<double>();
}

bool get_bool(const json& j, const char* key, const std::string& where, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  check(it->is_boolean(), "{}: \"{}\" must be true or false", where, key);
  return it->get<bool>();
}

// rope_scaling (older configs) and rope_parameters (transformers v5) share these fields.
void parse_rope(const json& r, const char* field, const std::string& where, ModelConfig& c) {
  check(r.is_object(), "{}: \"{}\" must be an object or null", where, field);
  std::string type = "default";
  if (auto it = r.find("rope_type"); it != r.end() && !it->is_null()) {
    check(it->is_string(), "{}: {}.rope_type must be a string", where, field);
    type = it->get<std::string>();
  } else if (auto t = r.find("type"); t != r.end() && !t->is_null()) {
    check(t->is_string(), "{}: {}.type must be a string", where, field);
    type = t->get<std::string>();
  }
  std::string ctx = where + " " + field;
  if (type == "default") {
    c.rope_scaling = RopeScaling{};
  } else if (type == "llama3") {
    RopeScaling s;
    s.type = RopeScaling::Type::Llama3;
    s.factor = float(get_num(r, "factor", ctx, std::nullopt));
    s.low_freq_factor = float(get_num(r, "low_freq_factor", ctx, std::nullopt));
    s.high_freq_factor = float(get_num(r, "high_freq_factor", ctx, std::nullopt));
    s.original_max_position = get_int(r, "original_max_position_embeddings", ctx, std::nullopt);
    c.rope_scaling = s;
  } else {
    fail("{}: unsupported rope type \"{}\" in {} (supported: default, llama3)", where, type, field);
  }
  if (r.contains("rope_theta")) c.rope_theta = float(get_num(r, "rope_theta", ctx, std::nullopt));
}

std::vector<int> token_ids(const json& j, const char* key, const std::string& where) {
  std::vector<int> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  auto one = [&](const json& v) {
    check(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < (int64_t{1} << 31),
          "{}: \"{}\" must hold non-negative token ids", where, key);
    out.push_back(int(v.get<int64_t>()));
  };
  if (it->is_array()) {
    for (const json& v : *it) one(v);
  } else {
    one(*it);
  }
  return out;
}

}  // namespace

ModelConfig parse_hf_config(const std::string& json_text, const std::string& where) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
  check(j.is_object(), "{}: expected a JSON object", where);

  ModelConfig c;
  auto archs = j.find("architectures");
  std::string arch;
  if (archs != j.end() && archs->is_array() && !archs->empty() && (*archs)[0].is_string())
    arch = (*archs)[0].get<std::string>();
  if (arch.empty()) {
    std::string mt = j.value("model_type", std::string());
    fail("{}: no \"architectures\" entry{} (supported: {})", where,
         mt.empty() ? std::string() : " (model_type " + mt + ")", kSupported);
  }
  if (arch == "LlamaForCausalLM") {
    c.arch = Arch::Llama;
  } else if (arch == "Qwen2ForCausalLM") {
    c.arch = Arch::Qwen2;
  } else if (arch == "Qwen3ForCausalLM") {
    c.arch = Arch::Qwen3;
  } else {
    fail("{}: unsupported architecture {} (supported: {})", where, arch, kSupported);
  }
  c.arch_name = arch;

  c.vocab_size = get_int(j, "vocab_size", where, std::nullopt);
  c.hidden_size = get_int(j, "hidden_size", where, std::nullopt);
  c.intermediate_size = get_int(j, "intermediate_size", where, std::nullopt);
  c.num_layers = get_int(j, "num_hidden_layers", where, std::nullopt);
  c.num_heads = get_int(j, "num_attention_heads", where, std::nullopt);
  c.num_kv_heads = get_int(j, "num_key_value_heads", where, c.num_heads);
  check(c.num_heads > 0, "{}: num_attention_heads must be positive", where);
  c.head_dim = get_int(j, "head_dim", where, c.hidden_size / c.num_heads);
  c.rms_norm_eps = float(get_num(j, "rms_norm_eps", where, 1e-6));
  c.rope_theta = float(get_num(j, "rope_theta", where, 10000.0));
  c.max_context =
      get_int(j, "max_position_embeddings", where, c.arch == Arch::Llama ? 2048 : 32768);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where, false);
  c.rope_layout = RopeLayout::RotateHalf;

  for (const char* field : {"rope_scaling", "rope_parameters"}) {
    auto it = j.find(field);
    if (it != j.end() && !it->is_null()) parse_rope(*it, field, where, c);
  }

  if (c.arch == Arch::Qwen2) {
    // Qwen2 always biases q/k/v and never o_proj.
    c.qkv_bias = true;
  } else {
    // LlamaConfig and Qwen3Config: attention_bias adds a bias to q, k, v and o_proj alike.
    bool bias = get_bool(j, "attention_bias", where, false);
    c.qkv_bias = bias;
    c.o_bias = bias;
  }
  c.qk_norm = c.arch == Arch::Qwen3;
  check(!get_bool(j, "mlp_bias", where, false), "{}: mlp_bias is not supported", where);
  check(!get_bool(j, "use_sliding_window", where, false),
        "{}: use_sliding_window is not supported (only full attention)", where);
  if (auto act = j.find("hidden_act"); act != j.end() && act->is_string())
    check(act->get<std::string>() == "silu", "{}: hidden_act {} is not supported (only silu)",
          where, act->get<std::string>());

  std::vector<int> bos = token_ids(j, "bos_token_id", where);
  c.bos_id = bos.empty() ? -1 : bos[0];
  c.eos_ids = token_ids(j, "eos_token_id", where);
  c.validate();
  return c;
}

}  // namespace kvo
