// Tiny HF configs of every supported architecture for random-weight tests (model/random_weights.h):
// GQA, llama3 RoPE scaling, Qwen2 biases, Qwen3 q/k norms, a tied Llama; small enough for the CPU.
#pragma once
#include <fmt/format.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "model/weights.h"

namespace kvo::testing {

inline std::string tiny_config_json(const std::string& arch, int layers = 3) {
  const bool llama = arch == "LlamaForCausalLM";
  return fmt::format(
      R"({{"architectures": ["{}"], "vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
          "num_hidden_layers": {}, "num_attention_heads": 4, "num_key_value_heads": 2,
          "head_dim": 32, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5,
          "rope_theta": 10000.0, "tie_word_embeddings": {}{}}})",
      arch, layers, llama ? "true" : "false",
      llama ? R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64})"
            : "");
}

inline const std::vector<std::string>& tiny_archs() {
  static const std::vector<std::string> archs = {"LlamaForCausalLM", "Qwen2ForCausalLM",
                                                 "Qwen3ForCausalLM"};
  return archs;
}

// Prompts of the given lengths, each a different deterministic id pattern.
inline std::vector<std::vector<int32_t>> tiny_prompts(int vocab,
                                                      std::initializer_list<int> lengths) {
  std::vector<std::vector<int32_t>> prompts;
  int salt = 0;
  for (int n : lengths) {
    std::vector<int32_t> p(n);
    for (int i = 0; i < n; ++i) p[i] = int32_t((i * 31 + salt * 17 + 5) % vocab);
    prompts.push_back(p);
    ++salt;
  }
  return prompts;
}

inline ModelConfig tiny_config(const std::string& arch, int layers = 3) {
  return parse_hf_config(tiny_config_json(arch, layers), "tiny " + arch);
}

}  // namespace kvo::testing
