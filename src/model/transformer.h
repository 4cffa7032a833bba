// The decoder-only transformer forward pass (Llama 3, Qwen 2, Qwen 3, SmolLM2), written once
// against the Backend interface. Attention goes through a KvPolicy, so the same pass serves
// dense and offloaded caches.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "kv/kv_policy.h"
#include "model/weights.h"

namespace kvo {

class Transformer {
 public:
  // Uploads the weights to the backend (converted to its compute dtype).
  Transformer(Backend& backend, const ModelConfig& config, const Weights& weights);

  // Runs `tokens` (positions start .. start + n - 1) through every layer, chunked so that at
  // most `chunk` tokens are in flight. Returns logits (n_out, vocab) for the last `n_out`
  // tokens (n_out <= tokens.size(); 0 returns nothing). `on_chunk(done, total)` reports
  // progress after each chunk.
  std::vector<float> forward(std::span<const int32_t> tokens, int64_t start, KvPolicy& kv,
                             int64_t n_out = 1, int64_t chunk = 512,
                             const std::function<void(int64_t, int64_t)>& on_chunk = {});

  const ModelConfig& config() const { return config_; }
  Backend& backend() { return backend_; }
  int64_t weight_bytes() const { return weight_bytes_; }

 private:
  struct Layer {
    DeviceArray attn_norm, wq, wk, wv, wo, bq, bk, bv, bo, q_norm, k_norm;
    DeviceArray ffn_norm, w_gate, w_up, w_down;
  };
  // Runs one chunk; writes the final-normed hidden states of the last n_out rows into logits.
  void forward_chunk(std::span<const int32_t> tokens, int64_t start, KvPolicy& kv, int64_t n_out,
                     std::vector<float>& logits);
  DeviceArray upload(const HostTensor& t);

  Backend& backend_;
  ModelConfig config_;
  RopeParams rope_;
  DeviceArray embedding_, final_norm_, lm_head_;
  bool tied_ = false;
  std::vector<Layer> layers_;
  int64_t weight_bytes_ = 0;
};

}  // namespace kvo
