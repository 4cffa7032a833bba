// Architecture hyper-parameters, filled from an HF config.json or from GGUF metadata.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kvo {

enum class Arch { Llama, Qwen2, Qwen3 };

// Which dimensions RoPE rotates together. HF checkpoints pair (i, i + head_dim/2)
// ("rotate_half"); GGUF `llama` checkpoints store Q/K rows permuted so that adjacent
// dimensions (2i, 2i+1) pair up. Attention scores are the same either way.
enum class RopeLayout { RotateHalf, AdjacentPairs };

struct RopeScaling {
  enum class Type { None, Llama3 } type = Type::None;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position = 8192;
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_name;  // as written in the source, e.g. "LlamaForCausalLM" or "llama"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  RopeLayout rope_layout = RopeLayout::RotateHalf;
  std::vector<float> rope_freq_factors;  // GGUF rope_freqs.weight: inv_freq[i] /= factors[i]
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2, or attention_bias in Llama/Qwen3 configs
  bool o_bias = false;    // attention_bias in Llama/Qwen3 configs also biases o_proj
  bool qk_norm = false;   // Qwen3: RMSNorm per head on q and k before RoPE
  int max_context = 0;    // max_position_embeddings / context_length
  int bos_id = -1;
  std::vector<int> eos_ids;  // generation stops on any of these

  // Bytes of dense K+V per token for the whole model at the given bytes per value.
  int64_t kv_bytes_per_token(int bytes_per_value = 2) const {
    return int64_t{2} * num_layers * num_kv_heads * head_dim * bytes_per_value;
  }
  // Throws kvo::Error if the numbers are inconsistent (e.g. heads not divisible by kv heads).
  void validate() const;
};

const char* arch_name(Arch arch);

}  // namespace kvo
