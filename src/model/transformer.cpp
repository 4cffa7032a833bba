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
                            upload(lw.ffn_norm), upload(lw.w_down),
                            upload_stacked(lw.w_gate, lw.w_up)});
  }
}

DeviceArray Transformer::upload_stacked(const HostTensor& a, const HostTensor& b) {
  const DeviceArray da = backend_.upload(a), db = backend_.upload(b);
  const Tensor ta = da.tensor(), tb = db.tensor();
  DeviceArray both = backend_.alloc(ta.rows + tb.rows, ta.cols);
  backend_.copy(ta, both.tensor().row_range(0, ta.rows));
  backend_.copy(tb, both.tensor().row_range(ta.rows, tb.rows));
  weight_bytes_ += both.nbytes();
  return both;
}

Transformer::Activations Transformer::make_activations(int64_t rows, bool pre_rope_keys) {
  const ModelConfig& c = config_;
  const int64_t q_width = int64_t{c.num_heads} * c.head_dim;
  const int64_t kv_width = int64_t{c.num_kv_heads} * c.head_dim;
  Backend& b = backend_;
  Activations a;
  a.x = b.alloc(rows, c.hidden_size);
  a.q = b.alloc(rows, q_width);
  a.attn = b.alloc(rows, q_width);
  a.k = b.alloc(rows, kv_width);
  a.v = b.alloc(rows, kv_width);
  if (pre_rope_keys) a.k_pre = b.alloc(rows, kv_width);
  a.ffn = b.alloc(rows, c.intermediate_size);
  return a;
}

int64_t Transformer::activation_bytes(int64_t rows) const {
  const ModelConfig& c = config_;
  const int64_t per_row = 3 * int64_t{c.hidden_size} + 2 * int64_t{c.num_heads} * c.head_dim +
                          3 * int64_t{c.num_kv_heads} * c.head_dim +
                          // ffn and the [gate | up] scratch matmul_swiglu may take; one logits row
                          3 * int64_t{c.intermediate_size} + c.vocab_size;
  return rows * per_row * value_bytes();
}

int64_t Transformer::recorded_step_bytes(int64_t kv_len) const {
  const ModelConfig& c = config_;
  const AttentionShape decode{c.num_heads, c.num_kv_heads, c.head_dim, 1, kv_len - 1, kv_len, 1.0f};
  // Per layer: the normed input twice, [gate | up], and the two products added onto the residual;
  // then the final norm's output for the LM head.
  const int64_t unfused =
      (4 * int64_t{c.hidden_size} + 2 * int64_t{c.intermediate_size}) * value_bytes();
  return c.num_layers * ((kv_len > 0 ? backend_.attention_workspace_bytes(decode) : 0) + unfused) +
         int64_t{c.hidden_size} * value_bytes();
}

std::vector<float> Transformer::forward(std::span<const int32_t> tokens, int64_t start,
                                        KvPolicy& kv, int64_t n_out, int64_t chunk,
                                        const std::function<void(int64_t, int64_t)>& on_chunk) {
  check(n_out >= 0 && n_out <= int64_t(tokens.size()), "internal: n_out {} out of range", n_out);
  DeviceArray logits = backend_.alloc(n_out, config_.vocab_size);
  forward_device(tokens, start, kv, chunk, on_chunk, logits.tensor());
  return n_out ? backend_.download(logits.tensor()) : std::vector<float>();
}

void Transformer::prefill(std::span<const int32_t> tokens, KvPolicy& kv, const Tensor& logits,
                          int64_t chunk, const std::function<void(int64_t, int64_t)>& on_chunk) {
  check(logits.rows == 1 && logits.cols == config_.vocab_size, "internal: prefill logits shape");
  forward_device(tokens, 0, kv, chunk, on_chunk, logits);
}

void Transformer::forward_device(std::span<const int32_t> tokens, int64_t start, KvPolicy& kv,
                                 int64_t chunk,
                                 const std::function<void(int64_t, int64_t)>& on_chunk,
                                 const Tensor& logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t n_out = logits.rows;
  if (n == 0) return;
  if (chunk <= 0) chunk = backend_.prefill_chunk_rows();
  Activations a = make_activations(std::min(chunk, n), kv.wants_pre_rope_keys());
  std::vector<int32_t> positions;
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t len = std::min(chunk, n - c0);
    // Rows of this chunk that are among the last n_out tokens.
    const int64_t want = std::max<int64_t>(0, std::min(len, c0 + len - (n - n_out)));
    positions.resize(len);
    std::iota(positions.begin(), positions.end(), static_cast<int32_t>(start + c0));
    Rows rows;
    rows.ids = tokens.subspan(c0, len);
    rows.positions = positions;
    rows.runs = {{&kv, start + c0, len}};
    run(a, rows, logits.row_range(want ? c0 + len - want - (n - n_out) : 0, want));
    if (on_chunk) on_chunk(c0 + len, n);
  }
}

Transformer::DecodeBatch Transformer::make_decode_batch(int64_t batch, bool pre_rope_keys) {
  DecodeBatch d;
  d.batch = batch;
  d.ids = backend_.alloc_ints(batch);
  d.positions = backend_.alloc_ints(batch);
  d.logits = backend_.alloc(batch, config_.vocab_size);
  d.act = make_activations(batch, pre_rope_keys);
  return d;
}

void Transformer::queue_decode_step(DecodeBatch& d, std::span<KvPolicy* const> kvs,
                                    std::span<const int64_t> host_positions, bool recorded) {
  check(int64_t(kvs.size()) == d.batch && (recorded || int64_t(host_positions.size()) == d.batch),
        "internal: decode step needs one KV policy and position per sequence");
  const Tensor ids = d.ids.tensor(), positions = d.positions.tensor();
  Rows rows;
  rows.ids_at = &ids;
  rows.positions_at = &positions;
  rows.recorded = recorded;
  for (int64_t b = 0; b < d.batch; ++b)
    rows.runs.push_back({kvs[b], recorded ? 0 : host_positions[b], 1});
  run(d.act, rows, d.logits.tensor());
}

std::optional<Transformer::BatchTables> Transformer::batch_tables(const Rows& in, int layer) const {
  if (!in.recorded) return std::nullopt;
  BatchTables bt;
  for (const Run& r : in.runs) {
    const KvPolicy::Tables t = r.kv->tables_at(layer);
    if (!t.keys.data || r.rows != 1) return std::nullopt;
    bt.keys.push_back(t.keys);
    bt.values.push_back(t.values);
    // One shape for all: the longest table bounds the keys, each sequence's position ends its own.
    const int64_t longest = std::max(bt.shape.kv_len, t.shape.kv_len);
    bt.shape = t.shape;
    bt.shape.kv_len = longest;
  }
  return bt;
}

void Transformer::attend_runs(const Rows& in, int layer, const Tensor& q, const Tensor& k,
                              const Tensor& v, const Tensor& k_pre, const Tensor& attn) {
  for (const Run& r : in.runs) r.kv->inputs_ready();
  int64_t r0 = 0;
  for (const Run& r : in.runs) {
    const Tensor rq = q.row_range(r0, r.rows), rk = k.row_range(r0, r.rows),
                 rv = v.row_range(r0, r.rows), ra = attn.row_range(r0, r.rows);
    const Tensor rk_pre = k_pre.data ? k_pre.row_range(r0, r.rows) : rk;
    if (in.recorded)
      r.kv->attend_at(layer, in.positions_at->row_range(r0, 1), rq, rk_pre, rk, rv, ra);
    else
      r.kv->attend(layer, r.start, rq, rk_pre, rk, rv, ra);
    r0 += r.rows;
  }
}

void Transformer::run(Activations& a, const Rows& in, const Tensor& logits) {
  const ModelConfig& c = config_;
  int64_t T = 0;
  for (const Run& r : in.runs) T += r.rows;
  Backend& b = backend_;
  auto rows_of = [T](const DeviceArray& d) {
    return d.empty() ? Tensor{} : d.tensor().row_range(0, T);
  };
  const Tensor x = rows_of(a.x), q = rows_of(a.q), k = rows_of(a.k), v = rows_of(a.v),
               k_pre = rows_of(a.k_pre), attn = rows_of(a.attn), ffn = rows_of(a.ffn);
  auto rope = [&](const Tensor& t) {
    if (in.positions_at)
      b.rope_at(t, *in.positions_at, c.head_dim, rope_);
    else
      b.rope(t, in.positions, c.head_dim, rope_);
  };

  if (in.ids_at)
    b.embedding_at(*in.ids_at, embedding_.tensor(), x);
  else
    b.embedding(in.ids, embedding_.tensor(), x);
  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& L = layers_[l];
    const Tensor bq = L.bq.tensor(), bk = L.bk.tensor(), bv = L.bv.tensor(), bo = L.bo.tensor();
    const Tensor qkv_w[3] = {L.wq.tensor(), L.wk.tensor(), L.wv.tensor()};
    const Tensor* qkv_bias[3] = {L.bq.empty() ? nullptr : &bq, L.bk.empty() ? nullptr : &bk,
                                 L.bv.empty() ? nullptr : &bv};
    const Tensor qkv[3] = {q, k, v};
    // Each norm runs inside the projection that reads its output, where the backend can.
    const InputNorm attn_norm{L.attn_norm.tensor(), c.rms_norm_eps};
    b.matmul_many(x, &attn_norm, qkv_w, qkv_bias, qkv);
    if (c.qk_norm) {  // Qwen3: RMSNorm over each head's vector, before RoPE
      const Tensor qh = q.reshaped(T * c.num_heads, c.head_dim);
      const Tensor kh = k.reshaped(T * c.num_kv_heads, c.head_dim);
      b.rmsnorm(qh, L.q_norm.tensor(), c.rms_norm_eps, qh);
      b.rmsnorm(kh, L.k_norm.tensor(), c.rms_norm_eps, kh);
    }
    if (k_pre.data) b.copy(k, k_pre);
    // Dense caches of a recorded step: RoPE, the K/V append and the attention of the whole batch
    // at once.
    if (const std::optional<BatchTables> t = batch_tables(in, l)) {
      b.rope_store_attention_batch_at(q, k, v, *in.positions_at, c.head_dim, rope_, t->keys,
                                      t->values, t->shape, attn);
    } else {
      rope(q);
      rope(k);
      attend_runs(in, l, q, k, v, k_pre, attn);
    }
    b.matmul_add(attn, L.wo.tensor(), L.bo.empty() ? nullptr : &bo, x);
    const InputNorm ffn_norm{L.ffn_norm.tensor(), c.rms_norm_eps};
    b.matmul_swiglu(x, &ffn_norm, L.w_gate_up.tensor(), ffn);
    b.matmul_add(ffn, L.w_down.tensor(), nullptr, x);
  }
  if (logits.rows == 0) return;
  // The final norm inside the LM head's projection, like the layers' norms.
  const InputNorm final_norm{final_norm_.tensor(), c.rms_norm_eps};
  const Tensor head[1] = {tied_ ? embedding_.tensor() : lm_head_.tensor()};
  const Tensor* no_bias[1] = {nullptr};
  const Tensor out[1] = {logits};
  b.matmul_many(x.row_range(T - logits.rows, logits.rows), &final_norm, head, no_bias, out);
}

}  // namespace kvo
