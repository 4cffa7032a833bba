#include "model/layer_weights.h"

namespace kvo {

LayerWeights read_layer_weights(const ModelConfig& c, const LayerTensorNames& n,
                                const std::string& prefix, const TensorGetter& get) {
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  const int64_t q_dim = int64_t(c.num_heads) * c.head_dim;
  const int64_t kv_dim = int64_t(c.num_kv_heads) * c.head_dim;
  auto at = [&](const char* name, const std::vector<int64_t>& shape) {
    return get(prefix + name, shape);
  };
  LayerWeights l;
  l.attn_norm = at(n.attn_norm, {hidden});
  l.wq = at(n.wq, {q_dim, hidden});
  l.wk = at(n.wk, {kv_dim, hidden});
  l.wv = at(n.wv, {kv_dim, hidden});
  l.wo = at(n.wo, {hidden, q_dim});
  if (c.qkv_bias) {
    l.bq = at(n.bq, {q_dim});
    l.bk = at(n.bk, {kv_dim});
    l.bv = at(n.bv, {kv_dim});
  }
  if (c.o_bias) l.bo = at(n.bo, {hidden});
  if (c.qk_norm) {
    l.q_norm = at(n.q_norm, {c.head_dim});
    l.k_norm = at(n.k_norm, {c.head_dim});
  }
  l.ffn_norm = at(n.ffn_norm, {hidden});
  l.w_gate = at(n.w_gate, {inter, hidden});
  l.w_up = at(n.w_up, {inter, hidden});
  l.w_down = at(n.w_down, {hidden, inter});
  return l;
}

}  // namespace kvo
