#include "model/transformer.h"

#include <algorithm>
#include <numeric>

#include "model/rope.h"
#include "util/error.h"

namespace kvo {

DeviceArray Transformer::upload(const HostTensor& t) {
  if (t.empty()) return {};
  DeviceArray a = backend_.upload(t);
  weight_bytes_ += a.nbytes();
  return a;
}

Transformer::Transformer(Backend& backend, const ModelConfig& config, const Weights& w)
    : backend_(backend), config_(config), rope_(make_rope_params(config)) {
  embedding_ = upload(w.token_embedding);
  final_norm_ = upload(w.final_norm);
  tied_ = w.lm_head.data == w.token_embedding.data;
  if (!tied_) lm_head_ = upload(w.lm_head);
  for (const LayerWeights& lw : w.layers) {
    layers_.push_back(Layer{upload(lw.attn_norm), upload(lw.wq), upload(lw.wk), upload(lw.wv),
                            upload(lw.wo), upload(lw.bq), upload(lw.bk), upload(lw.bv),
                            upload(lw.bo), upload(lw.q_norm), upload(lw.k_norm),
                            upload(lw.ffn_norm), upload(lw.w_gate), upload(lw.w_up),
                            upload(lw.w_down)});
  }
}

std::vector<float> Transformer::forward(std::span<const int32_t> tokens, int64_t start,
                                        KvPolicy& kv, int64_t n_out, int64_t chunk,
                                        const std::function<void(int64_t, int64_t)>& on_chunk) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  check(n_out >= 0 && n_out <= n, "internal: n_out {} out of range", n_out);
  std::vector<float> logits;
  logits.reserve(static_cast<size_t>(n_out * config_.vocab_size));
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t len = std::min(chunk, n - c0);
    // Rows of this chunk that are among the last n_out tokens.
    const int64_t want = std::max<int64_t>(0, std::min(len, c0 + len - (n - n_out)));
    forward_chunk(tokens.subspan(c0, len), start + c0, kv, want, logits);
    if (on_chunk) on_chunk(c0 + len, n);
  }
  return logits;
}

void Transformer::forward_chunk(std::span<const int32_t> tokens, int64_t start, KvPolicy& kv,
                                int64_t n_out, std::vector<float>& logits) {
  const ModelConfig& c = config_;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t q_width = int64_t{c.num_heads} * c.head_dim;
  const int64_t kv_width = int64_t{c.num_kv_heads} * c.head_dim;
  Backend& b = backend_;

  DeviceArray x = b.alloc(T, c.hidden_size);  // (T, hidden) residual stream
  DeviceArray h = b.alloc(T, c.hidden_size);  // (T, hidden) normed input of a block
  DeviceArray q = b.alloc(T, q_width), k = b.alloc(T, kv_width), v = b.alloc(T, kv_width);
  DeviceArray k_pre = kv.wants_pre_rope_keys() ? b.alloc(T, kv_width) : DeviceArray();
  DeviceArray attn = b.alloc(T, q_width);
  DeviceArray gate = b.alloc(T, c.intermediate_size), up = b.alloc(T, c.intermediate_size);

  std::vector<int32_t> positions(T);
  std::iota(positions.begin(), positions.end(), static_cast<int32_t>(start));

  b.embedding(tokens, embedding_.tensor(), x.tensor());
  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& L = layers_[l];
    b.rmsnorm(x.tensor(), L.attn_norm.tensor(), c.rms_norm_eps, h.tensor());
    const Tensor bq = L.bq.tensor(), bk = L.bk.tensor(), bv = L.bv.tensor(), bo = L.bo.tensor();
    b.matmul(h.tensor(), L.wq.tensor(), L.bq.empty() ? nullptr : &bq, q.tensor());
    b.matmul(h.tensor(), L.wk.tensor(), L.bk.empty() ? nullptr : &bk, k.tensor());
    b.matmul(h.tensor(), L.wv.tensor(), L.bv.empty() ? nullptr : &bv, v.tensor());
    if (c.qk_norm) {  // Qwen3: RMSNorm over each head's vector, before RoPE
      const Tensor qh = q.tensor().reshaped(T * c.num_heads, c.head_dim);
      const Tensor kh = k.tensor().reshaped(T * c.num_kv_heads, c.head_dim);
      b.rmsnorm(qh, L.q_norm.tensor(), c.rms_norm_eps, qh);
      b.rmsnorm(kh, L.k_norm.tensor(), c.rms_norm_eps, kh);
    }
    if (!k_pre.empty()) b.copy(k.tensor(), k_pre.tensor());
    b.rope(q.tensor(), positions, c.head_dim, rope_);
    b.rope(k.tensor(), positions, c.head_dim, rope_);
    kv.attend(l, start, q.tensor(), k_pre.empty() ? k.tensor() : k_pre.tensor(), k.tensor(),
              v.tensor(), attn.tensor());
    b.matmul(attn.tensor(), L.wo.tensor(), L.bo.empty() ? nullptr : &bo, h.tensor());
    b.add(x.tensor(), h.tensor());

    b.rmsnorm(x.tensor(), L.ffn_norm.tensor(), c.rms_norm_eps, h.tensor());
    b.matmul(h.tensor(), L.w_gate.tensor(), nullptr, gate.tensor());
    b.matmul(h.tensor(), L.w_up.tensor(), nullptr, up.tensor());
    b.swiglu(gate.tensor(), up.tensor(), gate.tensor());
    b.matmul(gate.tensor(), L.w_down.tensor(), nullptr, h.tensor());
    b.add(x.tensor(), h.tensor());
  }
  if (n_out == 0) return;
  const Tensor last = x.tensor().row_range(T - n_out, n_out);
  DeviceArray normed = b.alloc(n_out, c.hidden_size);
  b.rmsnorm(last, final_norm_.tensor(), c.rms_norm_eps, normed.tensor());
  DeviceArray out = b.alloc(n_out, c.vocab_size);
  b.matmul(normed.tensor(), tied_ ? embedding_.tensor() : lm_head_.tensor(), nullptr, out.tensor());
  std::vector<float> host = b.download(out.tensor());
  logits.insert(logits.end(), host.begin(), host.end());
}

}  // namespace kvo
