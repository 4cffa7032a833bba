// Hugging Face checkpoint folders: config.json (+ generation_config.json) and safetensors weights,
// mapped in place. Every tensor's shape is checked against the config before it is used.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/safetensors.h"
#include "model/layer_weights.h"
#include "model/weights.h"
#include "util/error.h"

namespace kvo {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

class TensorSource {
 public:
  TensorSource(const SafetensorsArchive& archive, const std::string& dir)
      : archive_(archive), dir_(dir) {}

  HostTensor get(const std::string& name, std::vector<int64_t> shape) const {
    const SafetensorsTensor* t = archive_.find(name);
    if (!t) fail("{}: missing tensor {}", dir_, name);
    return checked(name, *t, shape);
  }
  HostTensor maybe(const std::string& name, std::vector<int64_t> shape) const {
    const SafetensorsTensor* t = archive_.find(name);
    return t ? checked(name, *t, shape) : HostTensor{};
  }

 private:
  HostTensor checked(const std::string& name, const SafetensorsTensor& t,
                     const std::vector<int64_t>& shape) const {
    check(t.shape == shape, "{}: tensor {} has shape {}, expected {} from config.json", dir_, name,
          shape_str(t.shape), shape_str(shape));
    return t.host_tensor(name);
  }
  const SafetensorsArchive& archive_;
  const std::string& dir_;
};

}  // namespace

ModelConfig load_hf_config_file(const std::string& path) {
  if (fs::is_directory(path)) return load_hf_config(path);
  check(fs::exists(path), "{}: no such config file", path);
  return parse_hf_config(read_text(path), path);
}

ModelConfig load_hf_config(const std::string& dir) {
  fs::path config_path = fs::path(dir) / "config.json";
  check(fs::exists(config_path), "{}: no config.json (expected an HF checkpoint folder)", dir);
  ModelConfig c = parse_hf_config(read_text(config_path), config_path.string());

  // generation_config.json often lists more end-of-turn ids than config.json (Llama 3.x adds
  // <|eot_id|> and <|eom_id|>); generation must stop on all of them.
  fs::path gen_path = fs::path(dir) / "generation_config.json";
  if (fs::exists(gen_path)) {
    nlohmann::json g;
    try {
      g = nlohmann::json::parse(read_text(gen_path));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON: {}", gen_path.string(), e.what());
    }
    check(g.is_object(), "{}: expected a JSON object", gen_path.string());
    auto it = g.find("eos_token_id");
    if (it != g.end() && !it->is_null()) {
      std::vector<nlohmann::json> ids = it->is_array() ? it->get<std::vector<nlohmann::json>>()
                                                       : std::vector<nlohmann::json>{*it};
      for (const auto& v : ids) {
        check(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < (1ll << 31),
              "{}: eos_token_id must hold non-negative token ids", gen_path.string());
        int id = int(v.get<int64_t>());
        if (std::find(c.eos_ids.begin(), c.eos_ids.end(), id) == c.eos_ids.end())
          c.eos_ids.push_back(id);
      }
    }
    c.validate();
  }
  return c;
}

LoadedModel load_hf_checkpoint(const std::string& dir) {
  LoadedModel m;
  m.source_format = "safetensors";
  m.config = load_hf_config(dir);
  const ModelConfig& c = m.config;
  SafetensorsArchive archive = SafetensorsArchive::open(dir);
  TensorSource src(archive, dir);

  const int64_t hidden = c.hidden_size, vocab = c.vocab_size;
  Weights& w = m.weights;
  w.token_embedding = src.get("model.embed_tokens.weight", {vocab, hidden});
  w.final_norm = src.get("model.norm.weight", {hidden});
  w.lm_head = src.maybe("lm_head.weight", {vocab, hidden});
  if (w.lm_head.empty()) {
    check(c.tie_word_embeddings,
          "{}: missing tensor lm_head.weight (and tie_word_embeddings is false)", dir);
    w.lm_head = w.token_embedding;
  }
  const LayerTensorNames names = {
      "input_layernorm.weight",  "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight", "self_attn.o_proj.weight", "self_attn.q_proj.bias",
      "self_attn.k_proj.bias",   "self_attn.v_proj.bias",   "self_attn.o_proj.bias",
      "self_attn.q_norm.weight", "self_attn.k_norm.weight", "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",    "mlp.up_proj.weight",      "mlp.down_proj.weight"};
  const TensorGetter get = [&](const std::string& name, const std::vector<int64_t>& shape) {
    return src.get(name, shape);
  };
  for (int i = 0; i < c.num_layers; ++i)
    w.layers.push_back(
        read_layer_weights(c, names, "model.layers." + std::to_string(i) + ".", get));
  w.files = archive.files();
  return m;
}

}  // namespace kvo
