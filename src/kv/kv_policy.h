// The KV-cache policy interface. A policy answers, per layer and step: what stays on the
// device, which tokens each query attends to, and how offloaded tokens are brought back. The
// transformer forward pass only calls `attend` (or, for caches that expose their tables, attends
// a batch of them in one pass: tables_at); it never knows which policy runs.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "kv/kv_spec.h"
#include "model/config.h"

namespace kvo {

// Where the KV cache of one sequence lives, in bytes (filled from actual allocations).
struct KvMemoryReport {
  int64_t tokens = 0;     // tokens held
  int64_t gpu_bytes = 0;  // device-resident KV (keys, values, landmarks, buffers)
  int64_t cpu_bytes = 0;  // host-resident (offloaded) KV
  // host -> device bytes a decode step moved: the mean over the decode steps since the prefill
  // (before the first: the layout's bound, kv_layout.h)
  int64_t pcie_bytes_per_step = 0;
};

class KvPolicy {
 public:
  virtual ~KvPolicy() = default;
  virtual std::string name() const = 0;

  // One layer's attention for `q_len` new tokens at positions [start, start + q_len):
  //   q      (q_len, heads * head_dim)     post-RoPE queries
  //   k_pre  (q_len, kv_heads * head_dim)  keys before RoPE (for policies that store them)
  //   k      (q_len, kv_heads * head_dim)  post-RoPE keys
  //   v      (q_len, kv_heads * head_dim)
  //   out    (q_len, heads * head_dim)
  // The policy stores the new keys/values, then attends each query to the tokens it selects.
  virtual void attend(int layer, int64_t start, const Tensor& q, const Tensor& k_pre,
                      const Tensor& k, const Tensor& v, const Tensor& out) = 0;
  // The caller queued everything the coming attend/attend_at calls of a layer read (q, k, v,
  // positions) and queues nothing else before them: a batched step calls this on every
  // sequence's policy first, so a policy may run its attention on a stream of its own, side by
  // side with the other sequences' (the CUDA sparse policies do). Without it attend forks at its
  // own call.
  virtual void inputs_ready() {}
  // Called once after the whole prompt went through every layer (landmarks, offloading).
  virtual void finish_prefill() {}
  virtual int64_t length() const = 0;
  virtual int64_t capacity() const = 0;
  virtual KvMemoryReport memory() const = 0;
  // Whether `attend` needs pre-RoPE keys (lets the forward pass skip a copy when not).
  virtual bool wants_pre_rope_keys() const { return false; }
  // Makes this policy, fresh from make_kv_policy with the same spec and capacity, hold what
  // `prefilled` holds after its finish_prefill. The state is copied, not shared: both decode
  // independently and memory() counts each (kvoffload bench --shared-prompt prefills one
  // sequence for a whole batch). kvo::Error when the two policies differ.
  virtual void copy_from(const KvPolicy& prefilled) = 0;

  // Recorded decode steps (CUDA graphs; Backend::record). A recordable policy's `attend_at`
  // queues the work of attend(layer, start, ...) for one new token whose position `start` it
  // reads from `position`, a (1, 1) index tensor in backend memory, when the work runs; so one
  // recorded step replays at every position. The caller reports each replayed step's length
  // with `recorded_step_done`. Policies that decide on the host per step keep the defaults and
  // run eagerly.
  virtual bool recordable() const { return false; }
  virtual void attend_at(int layer, const Tensor& position, const Tensor& q, const Tensor& k_pre,
                         const Tensor& k, const Tensor& v, const Tensor& out) {
    (void)layer, (void)position, (void)q, (void)k_pre, (void)k, (void)v, (void)out;
  }
  virtual void recorded_step_done(int64_t length) { (void)length; }
  // A recordable policy that stores each layer's new keys and values unchanged at row `position`
  // of a (capacity, kv_heads * head_dim) table each, and attends exactly (causal attention of
  // `shape` over rows [0, position] of them), returns those tables (dense): the caller then
  // writes the new rows in the pass that rotates q and k and attends a whole batch of such
  // caches at once (Backend::rope_store_attention_batch_at) instead of calling
  // attend_at. Other policies store keys their own way: empty tables.
  struct Tables {
    Tensor keys, values;
    AttentionShape shape;  // q_len 1, kv_len the capacity
  };
  virtual Tables tables_at(int layer) const {
    (void)layer;
    return {};
  }
};

// Attention quality of one layer and KV head at one decode step, against exact attention over
// every token with the same queries (kvoffload diagnose).
struct KvHeadDiagnostics {
  int layer = 0;
  int kv_head = 0;
  int64_t attended_tokens =
      0;                    // keys this head attended (sinks, outliers, local, selected, generated)
  double mass_covered = 0;  // share of the exact attention mass on those keys (mean over
                            // the group's query heads and the query positions)
  double output_rel_error = 0;  // ||o - o_exact|| / ||o_exact|| over the group's outputs
  std::vector<int64_t> attended_positions;  // ascending token positions this head attended
};

// Sparse policies (shadowkv, yakv, quest) also implement this.
class KvDiagnosable {
 public:
  virtual ~KvDiagnosable() = default;
  // Keeps an exact copy of the prompt's K/V (not counted in memory()) so each decode step can
  // compare with exact attention. Call before the prefill.
  virtual void enable_diagnostics() = 0;
  // One entry per (layer, kv head) from the latest step after finish_prefill.
  virtual const std::vector<KvHeadDiagnostics>& diagnostics() const = 0;
  // The layout the policy allocated at finish_prefill (kv_layout.h); method "" before.
  virtual std::string layout_summary() const = 0;
};

// `dense`: every K/V of every token on the device, exact attention. capacity = max tokens.
std::unique_ptr<KvPolicy> make_dense_policy(Backend& backend, const ModelConfig& config,
                                            int64_t capacity);

// Any policy from a KvSpec (kv_spec.h; resolved here): dense, shadowkv, yakv or quest.
// kvo::Error for bad knobs or knobs the model cannot take (e.g. --rank above kv_heads*head_dim).
std::unique_ptr<KvPolicy> make_kv_policy(Backend& backend, const ModelConfig& config,
                                         const KvSpec& spec, int64_t capacity);

}  // namespace kvo
