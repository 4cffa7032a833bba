// The weights of a decoder-only transformer, in HF orientation: linear weights are
// (out_features, in_features) row-major, so y = W x.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/mapped_file.h"
#include "model/config.h"
#include "model/tensor.h"

namespace kvo {

class GgufFile;

struct LayerWeights {
  HostTensor attn_norm;             // (hidden)
  HostTensor wq, wk, wv, wo;        // (heads*head_dim, hidden) ... wo: (hidden, heads*head_dim)
  HostTensor bq, bk, bv;            // Qwen2 only: (heads*head_dim), (kv_heads*head_dim) x2
  HostTensor bo;                    // only when config.o_bias: (hidden)
  HostTensor q_norm, k_norm;        // Qwen3 only: (head_dim)
  HostTensor ffn_norm;              // (hidden)
  HostTensor w_gate, w_up, w_down;  // (inter, hidden), (inter, hidden), (hidden, inter)
};

struct Weights {
  HostTensor token_embedding;  // (vocab, hidden)
  HostTensor final_norm;       // (hidden)
  HostTensor lm_head;          // (vocab, hidden); the same tensor as token_embedding when tied
  std::vector<LayerWeights> layers;
  std::vector<std::shared_ptr<MappedFile>> files;  // keep mappings alive
};

struct LoadedModel {
  ModelConfig config;
  Weights weights;
  std::string source_format;  // "safetensors" or "gguf"
};

// HF checkpoint folder: config.json + model.safetensors or sharded
// (model.safetensors.index.json). F32/F16/BF16 tensors are used in place.
LoadedModel load_hf_checkpoint(const std::string& dir);

// GGUF v3 file of a llama / qwen2 / qwen3 model. Quantized tensors are dequantized to F32.
LoadedModel load_gguf_model(const std::string& path);

// Reads dir/config.json and merges eos ids from dir/generation_config.json when present.
ModelConfig load_hf_config(const std::string& dir);

// An HF config.json file, or a folder holding one (then exactly load_hf_config).
ModelConfig load_hf_config_file(const std::string& path);

// Model hyper-parameters from GGUF metadata alone (no tensor data is touched, except the small
// rope_freqs tensor when present).
ModelConfig gguf_model_config(const GgufFile& gguf);

// Parses an HF config.json (already read as text); `where` names the source in errors.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& where);

}  // namespace kvo
