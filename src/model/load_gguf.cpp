// GGUF models (llama, qwen2, qwen3 as written by llama.cpp's converter): hyper-parameters from
// metadata, weights used in place when 16/32-bit float, dequantized to F32 otherwise.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>

#include "io/gguf.h"
#include "model/layer_weights.h"
#include "model/weights.h"
#include "util/error.h"

namespace kvo {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// GGUF lists dimensions fastest first (ne[0] = row length); HostTensor wants PyTorch order.
std::vector<int64_t> torch_shape(const GgufTensorInfo& t) {
  return std::vector<int64_t>(t.ne.rbegin(), t.ne.rend());
}

bool is_float_type(uint32_t type) {
  return type == uint32_t(GgmlType::F32) || type == uint32_t(GgmlType::F16) ||
         type == uint32_t(GgmlType::BF16);
}

bool can_dequantize(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q4_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return is_float_type(type);
  }
}

HostTensor to_host(const GgufFile& g, const GgufTensorInfo& t) {
  std::vector<int64_t> shape = torch_shape(t);
  if (is_float_type(t.type)) {
    HostTensor h;
    h.dtype = t.type == uint32_t(GgmlType::F32)   ? DType::F32
              : t.type == uint32_t(GgmlType::F16) ? DType::F16
                                                  : DType::BF16;
    h.shape = std::move(shape);
    h.data = t.data;
    h.owner = g.file();
    if (reinterpret_cast<uintptr_t>(t.data) % dtype_size(h.dtype) != 0) {
      // Only possible with general.alignment < 4 (or bytes parsed from an unaligned buffer):
      // copy once so consumers can read the tensor as a float/uint16 array.
      auto copy = std::make_shared<std::vector<uint32_t>>((t.nbytes + 3) / 4);
      std::memcpy(copy->data(), t.data, t.nbytes);
      h.data = copy->data();
      h.owner = copy;
    }
    return h;
  }
  check(can_dequantize(t.type),
        "{}: tensor {} has ggml type {}, which cannot be dequantized (supported: F32, F16, BF16, "
        "Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)",
        g.name(), t.name, ggml_type_name(t.type));
  const int64_t cols = t.ne[0];
  const int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  const size_t row_bytes = ggml_row_bytes(t.type, cols);
  std::vector<float> values(static_cast<size_t>(t.numel()));
  // The type and row length were validated above and by the parser, so the loop cannot throw;
  // the guard still keeps an exception from escaping an OpenMP region (which would abort).
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    try {
      dequantize(t.type, t.data + r * row_bytes, values.data() + r * cols, cols);
    } catch (...) {
      failed = true;
    }
  }
  check(!failed, "{}: failed to dequantize tensor {}", g.name(), t.name);
  return HostTensor::owned_f32(std::move(shape), std::move(values));
}

class TensorSource {
 public:
  explicit TensorSource(const GgufFile& g) : g_(g) {}

  HostTensor get(const std::string& name, const std::vector<int64_t>& shape) const {
    const GgufTensorInfo* t = g_.tensor(name);
    if (!t) fail("{}: missing tensor {}", g_.name(), name);
    return checked(*t, shape);
  }
  HostTensor maybe(const std::string& name, const std::vector<int64_t>& shape) const {
    const GgufTensorInfo* t = g_.tensor(name);
    return t ? checked(*t, shape) : HostTensor{};
  }

 private:
  HostTensor checked(const GgufTensorInfo& t, const std::vector<int64_t>& shape) const {
    std::vector<int64_t> got = torch_shape(t);
    check(got == shape, "{}: tensor {} has shape {}, expected {} from the metadata", g_.name(),
          t.name, shape_str(got), shape_str(shape));
    return to_host(g_, t);
  }
  const GgufFile& g_;
};

int int_key(const GgufFile& g, const std::string& key) {
  int64_t v = g.get_int(key);
  check(v >= 0 && v <= std::numeric_limits<int>::max(), "{}: GGUF metadata {} = {} is out of range",
        g.name(), key, v);
  return static_cast<int>(v);
}

// head_count_kv may be an array with one entry per layer; we support uniform values only.
int uniform_int_key(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.find(key);
  if (v && std::holds_alternative<GgufArray>(v->value)) {
    std::vector<int64_t> vals = g.get_int_array(key);
    check(!vals.empty() &&
              std::all_of(vals.begin(), vals.end(), [&](int64_t x) { return x == vals[0]; }),
          "{}: GGUF metadata {} varies per layer, which is not supported", g.name(), key);
    check(vals[0] >= 0 && vals[0] <= std::numeric_limits<int>::max(),
          "{}: GGUF metadata {} is out of range", g.name(), key);
    return static_cast<int>(vals[0]);
  }
  return int_key(g, key);
}

}  // namespace

ModelConfig gguf_model_config(const GgufFile& g) {
  ModelConfig c;
  const std::string arch = g.get_string("general.architecture");
  if (arch == "llama") {
    c.arch = Arch::Llama;
  } else if (arch == "qwen2") {
    c.arch = Arch::Qwen2;
  } else if (arch == "qwen3") {
    c.arch = Arch::Qwen3;
  } else {
    fail("{}: unsupported architecture {} (supported: llama, qwen2, qwen3)", g.name(), arch);
  }
  c.arch_name = arch;
  const std::string p = arch + ".";

  c.num_layers = int_key(g, p + "block_count");
  c.max_context = int_key(g, p + "context_length");
  c.hidden_size = int_key(g, p + "embedding_length");
  c.intermediate_size = uniform_int_key(g, p + "feed_forward_length");
  c.num_heads = uniform_int_key(g, p + "attention.head_count");
  c.num_kv_heads = g.has(p + "attention.head_count_kv")
                       ? uniform_int_key(g, p + "attention.head_count_kv")
                       : c.num_heads;
  check(c.num_heads > 0, "{}: {}attention.head_count must be positive", g.name(), p);
  c.head_dim = g.has(p + "attention.key_length") ? int_key(g, p + "attention.key_length")
                                                 : c.hidden_size / c.num_heads;
  if (g.has(p + "attention.value_length"))
    check(int_key(g, p + "attention.value_length") == c.head_dim,
          "{}: different key and value head sizes are not supported", g.name());
  c.rms_norm_eps = g.has(p + "attention.layer_norm_rms_epsilon")
                       ? float(g.get_float(p + "attention.layer_norm_rms_epsilon"))
                       : 1e-5f;
  c.rope_theta = g.has(p + "rope.freq_base") ? float(g.get_float(p + "rope.freq_base")) : 10000.0f;

  if (g.has("tokenizer.ggml.tokens")) {
    const GgufValue* tokens = g.find("tokenizer.ggml.tokens");
    const GgufArray* arr = std::get_if<GgufArray>(&tokens->value);
    check(arr != nullptr, "{}: tokenizer.ggml.tokens is not an array", g.name());
    c.vocab_size = static_cast<int>(std::min<size_t>(arr->size(), std::numeric_limits<int>::max()));
  } else if (g.has(p + "vocab_size")) {
    c.vocab_size = int_key(g, p + "vocab_size");
  } else if (const GgufTensorInfo* emb = g.tensor("token_embd.weight");
             emb && emb->ne.size() == 2) {
    c.vocab_size = static_cast<int>(std::min<int64_t>(emb->ne[1], std::numeric_limits<int>::max()));
  }

  // llama.cpp's converter writes linear/yarn scaling as metadata; Llama 3.x's llama3 scaling is
  // folded into a rope_freqs tensor instead (read below).
  if (g.has(p + "rope.scaling.type")) {
    std::string type = g.get_string(p + "rope.scaling.type");
    // A factor of 1 means no scaling whatever the type says; some converters write it that way.
    bool unit = !g.has(p + "rope.scaling.factor") || g.get_float(p + "rope.scaling.factor") == 1.0;
    check(type == "none" || unit,
          "{}: unsupported rope scaling type {} (supported: none, or llama3 via "
          "rope_freqs.weight)",
          g.name(), type);
  }
  if (g.has(p + "rope.dimension_count"))
    check(
        int_key(g, p + "rope.dimension_count") == c.head_dim,
        "{}: partial rotary embeddings ({}rope.dimension_count {} < head_dim {}) are not supported",
        g.name(), p, int_key(g, p + "rope.dimension_count"), c.head_dim);
  if (g.has(p + "rope.scale_linear"))
    check(g.get_float(p + "rope.scale_linear") == 1.0, "{}: linear rope scaling is not supported",
          g.name());
  if (const GgufTensorInfo* rf = g.tensor("rope_freqs.weight")) {
    check(rf->type == uint32_t(GgmlType::F32) && rf->ne.size() == 1,
          "{}: rope_freqs.weight must be a 1-D F32 tensor", g.name());
    c.rope_freq_factors.resize(static_cast<size_t>(rf->ne[0]));
    std::memcpy(c.rope_freq_factors.data(), rf->data, rf->nbytes);
  }

  // llama.cpp's converter permutes the rows of Q and K of `llama` checkpoints so that each head's
  // rotation pairs become adjacent dimensions (2i, 2i+1) instead of HF's (i, i + head_dim/2).
  // We keep the stored order and rotate adjacent pairs: q and k are permuted the same way, so
  // every dot product q.k, and thus attention, is identical to HF. qwen2/qwen3 are converted
  // without the permutation and use llama.cpp's NEOX (rotate-half) RoPE, as HF does.
  c.rope_layout = c.arch == Arch::Llama ? RopeLayout::AdjacentPairs : RopeLayout::RotateHalf;
  c.tie_word_embeddings = g.tensor("output.weight") == nullptr;
  c.qkv_bias = c.arch == Arch::Qwen2 || g.tensor("blk.0.attn_q.bias") != nullptr;
  c.o_bias = g.tensor("blk.0.attn_output.bias") != nullptr;
  c.qk_norm = c.arch == Arch::Qwen3;

  if (g.has("tokenizer.ggml.bos_token_id")) c.bos_id = int_key(g, "tokenizer.ggml.bos_token_id");
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    if (!g.has(key)) continue;
    int id = int_key(g, key);
    if (std::find(c.eos_ids.begin(), c.eos_ids.end(), id) == c.eos_ids.end())
      c.eos_ids.push_back(id);
  }
  c.validate();
  return c;
}

LoadedModel load_gguf_model(const std::string& path) {
  GgufFile g = GgufFile::open(path);
  LoadedModel m;
  m.source_format = "gguf";
  m.config = gguf_model_config(g);
  const ModelConfig& c = m.config;
  TensorSource src(g);

  const int64_t hidden = c.hidden_size, vocab = c.vocab_size;
  Weights& w = m.weights;
  w.token_embedding = src.get("token_embd.weight", {vocab, hidden});
  w.final_norm = src.get("output_norm.weight", {hidden});
  w.lm_head = c.tie_word_embeddings ? w.token_embedding : src.get("output.weight", {vocab, hidden});
  const LayerTensorNames names = {"attn_norm.weight",   "attn_q.weight",      "attn_k.weight",
                                  "attn_v.weight",      "attn_output.weight", "attn_q.bias",
                                  "attn_k.bias",        "attn_v.bias",        "attn_output.bias",
                                  "attn_q_norm.weight", "attn_k_norm.weight", "ffn_norm.weight",
                                  "ffn_gate.weight",    "ffn_up.weight",      "ffn_down.weight"};
  const TensorGetter get = [&](const std::string& name, const std::vector<int64_t>& shape) {
    return src.get(name, shape);
  };
  for (int i = 0; i < c.num_layers; ++i)
    w.layers.push_back(read_layer_weights(c, names, "blk." + std::to_string(i) + ".", get));
  w.files = {g.file()};
  return m;
}

}  // namespace kvo
