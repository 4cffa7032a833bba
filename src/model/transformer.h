// The decoder-only transformer forward pass (Llama 3, Qwen 2, Qwen 3, SmolLM2), written once
// against the Backend interface. Attention goes through a KvPolicy, so the same pass serves
// dense and offloaded caches. One layer loop serves a prompt chunk of one sequence and a
// batched decode step (one token of each of B sequences, each with its own KvPolicy).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
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
  // most `chunk` tokens are in flight (0: the backend's prefill_chunk_rows()). Returns logits
  // (n_out, vocab) for the last `n_out` tokens (n_out <= tokens.size(); 0 returns nothing).
  // `on_chunk(done, total)` reports progress after each chunk.
  std::vector<float> forward(std::span<const int32_t> tokens, int64_t start, KvPolicy& kv,
                             int64_t n_out = 1, int64_t chunk = 0,
                             const std::function<void(int64_t, int64_t)>& on_chunk = {});
  // forward() of a whole prompt (from position 0) that leaves the last token's logits in
  // backend memory: `logits` is a (1, vocab) backend tensor.
  void prefill(std::span<const int32_t> tokens, KvPolicy& kv, const Tensor& logits,
               int64_t chunk = 0, const std::function<void(int64_t, int64_t)>& on_chunk = {});

  // Activations of `rows` tokens in flight.
  struct Activations {
    DeviceArray x;        // (rows, hidden) residual stream
    DeviceArray q, attn;  // (rows, heads * head_dim)
    DeviceArray k, v;     // (rows, kv_heads * head_dim)
    DeviceArray k_pre;    // (rows, kv_heads * head_dim) pre-RoPE keys, when the policy wants
    DeviceArray ffn;      // (rows, intermediate) silu(gate) * up
  };
  // Backend state of batched decode steps, kept across steps so that a recorded step (CUDA
  // graph) stays valid: row b of every tensor belongs to sequence b.
  struct DecodeBatch {
    int64_t batch = 0;
    DeviceArray ids;        // (B, 1) I32 tokens to feed; the sampler writes them
    DeviceArray positions;  // (B, 1) I32 their positions
    DeviceArray logits;     // (B, vocab) the step's output
    Activations act;
  };
  DecodeBatch make_decode_batch(int64_t batch, bool pre_rope_keys);
  // Queues one decode step: sequence b feeds ids[b] at positions[b] through kvs[b].
  // recorded: attention through KvPolicy::attend_at (every policy recordable), so the queued
  // work may be recorded once and replayed; else through attend() at host_positions[b], which
  // must equal what `positions` holds.
  void queue_decode_step(DecodeBatch& d, std::span<KvPolicy* const> kvs,
                         std::span<const int64_t> host_positions, bool recorded);

  const ModelConfig& config() const { return config_; }
  Backend& backend() { return backend_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  // Weight bytes one decode step reads: all but an untied embedding table (only B rows of it).
  int64_t decode_weight_bytes() const {
    return weight_bytes_ - (tied_ ? 0 : int64_t(embedding_.nbytes()));
  }
  // Bytes of one value in the backend's compute dtype (weights, activations, KV).
  int value_bytes() const { return int(dtype_size(embedding_.tensor().dtype)); }
  // Backend bytes of the activations of `rows` tokens in flight (make_activations).
  int64_t activation_bytes(int64_t rows) const;
  // Backend bytes a recorded decode step keeps per sequence while the recording lives (it never
  // reuses a block freed inside it): each layer's backend attention workspace at kv_len keys
  // (0: the KV policy attends through a workspace of its own) and the scratch of the fused
  // ops' unfused paths (Backend::matmul_many, matmul_add, matmul_swiglu: taken when a batch is
  // too large for the decode matvec).
  int64_t recorded_step_bytes(int64_t kv_len) const;

 private:
  struct Layer {
    DeviceArray attn_norm, wq, wk, wv, wo, bq, bk, bv, bo, q_norm, k_norm;
    DeviceArray ffn_norm, w_down;
    DeviceArray w_gate_up;  // (2 * intermediate, hidden): w_gate rows, then w_up rows, so one
                            // GEMM (one weight stream in decode) computes both projections
  };
  // The rows of a and b stacked into one backend array.
  DeviceArray upload_stacked(const HostTensor& a, const HostTensor& b);
  // Rows of one forward: token ids and positions from the host or from index tensors, split in
  // runs of consecutive rows that belong to one sequence.
  struct Run {
    KvPolicy* kv;
    int64_t start;  // position of the run's first row (host; unused when recorded)
    int64_t rows;
  };
  struct Rows {
    std::span<const int32_t> ids, positions;  // host, or empty with ids_at / positions_at
    const Tensor* ids_at = nullptr;
    const Tensor* positions_at = nullptr;
    std::vector<Run> runs;
    bool recorded = false;
  };
  Activations make_activations(int64_t rows, bool pre_rope_keys);
  // Runs the rows through every layer and writes the logits of the last logits.rows rows.
  void run(Activations& a, const Rows& rows, const Tensor& logits);
  // A recorded step of one row per sequence over caches that store rows as given and attend
  // exactly (KvPolicy::tables_at): their tables and the attention shape for one batched pass.
  struct BatchTables {
    std::vector<Tensor> keys, values;
    AttentionShape shape;
  };
  std::optional<BatchTables> batch_tables(const Rows& rows, int layer) const;
  // Each run's rows attend through its own policy (the policies may run side by side).
  void attend_runs(const Rows& rows, int layer, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& k_pre, const Tensor& attn);
  void forward_device(std::span<const int32_t> tokens, int64_t start, KvPolicy& kv, int64_t chunk,
                      const std::function<void(int64_t, int64_t)>& on_chunk, const Tensor& logits);
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
