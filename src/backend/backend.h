// The Backend interface: the small C-like op set the transformer forward pass and the KV-cache
// policies are written against. The CPU backend (fp32, BLAS, OpenMP) is the reference; a CUDA
// backend implements the same ops in bf16. All tensors are row-major 2-D views of backend
// memory; per-head layouts are expressed by viewing (tokens, heads * head_dim) as
// (tokens * heads, head_dim) where an op works per head.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/tensor.h"

namespace kvo {

class Backend;

// A non-owning view: `rows` x `cols` elements of `dtype`, rows `stride` elements apart.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;  // elements between row starts (>= cols)

  Tensor row_range(int64_t first, int64_t count) const;       // rows [first, first + count)
  Tensor reshaped(int64_t new_rows, int64_t new_cols) const;  // contiguous views only
  bool contiguous() const { return stride == cols; }
};

// Backend memory that frees itself; `tensor()` is its full view.
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(Backend* backend, void* data, DType dtype, int64_t rows, int64_t cols);
  ~DeviceArray();
  DeviceArray(DeviceArray&& other) noexcept;
  DeviceArray& operator=(DeviceArray&& other) noexcept;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  Tensor tensor() const { return {data_, dtype_, rows_, cols_, cols_}; }
  bool empty() const { return data_ == nullptr; }
  size_t nbytes() const { return static_cast<size_t>(rows_ * cols_) * dtype_size(dtype_); }

 private:
  Backend* backend_ = nullptr;
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  int64_t rows_ = 0, cols_ = 0;
};

// Per-pair rotation frequencies of RoPE plus the pairing rule (see model/rope.h).
struct RopeParams {
  std::vector<float> inv_freq;  // (head_dim / 2)
  bool adjacent_pairs = false;  // pairs (2i, 2i+1) instead of (i, i + head_dim/2)
};

// The RMSNorm a projection applies to its input rows first (x / rms(x) * weight), so that a
// backend may normalize on the fly rather than in an op of its own.
struct InputNorm {
  Tensor weight;  // (1, in)
  float eps = 0.0f;
};

// Shapes of one attention call. Queries are `q_len` consecutive tokens whose first has
// position `q_start`; keys/values hold positions [0, kv_len). Causal: query at position p sees
// keys 0..p. GQA: query head h reads KV head h / (num_heads / num_kv_heads).
struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int64_t q_len = 0;
  int64_t q_start = 0;
  int64_t kv_len = 0;
  float scale = 0.0f;  // usually 1/sqrt(head_dim)
};

// Work queued on a backend, recorded once and replayed (a CUDA graph): every op of it reads its
// inputs when it runs, so a replay sees the current contents of the buffers it was recorded with.
class Recording {
 public:
  virtual ~Recording() = default;
  virtual void replay() = 0;
};

// A read of an index tensor split in two: queue() queues the copy of src (its n ints) and
// returns, wait() blocks until that copy has landed and returns it. The decoder queues step t + 1
// before it waits for step t's sampled ids, so the device does not idle while the host reads.
class IntsReadback {
 public:
  virtual ~IntsReadback() = default;
  virtual void queue(const Tensor& src) = 0;
  virtual std::vector<int32_t> wait() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Memory. `upload` converts a host tensor (any host dtype) to the backend's compute dtype.
  virtual DeviceArray alloc(int64_t rows, int64_t cols) = 0;
  virtual DeviceArray upload(const HostTensor& host) = 0;
  virtual void free(void* data) = 0;
  virtual std::vector<float> download(const Tensor& src) = 0;   // row-major, no padding
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;  // same shape

  // out(t, :) = table(ids[t], :)
  virtual void embedding(std::span<const int32_t> ids, const Tensor& table, const Tensor& out) = 0;
  // out = x / rms(x) * weight, per row; weight has x.cols elements.
  virtual void rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) = 0;
  // out = x * w^T (+ bias): x (n, in), w (out_features, in), bias (1, out_features) or empty.
  // w (in every matmul* op) must not be written by work queued before: a backend may start
  // reading weights while earlier ops still run (CUDA: the decode matvec's loads before its
  // programmatic-launch wait).
  virtual void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out) = 0;
  // In place on x (tokens, heads * head_dim); token t has position positions[t].
  virtual void rope(const Tensor& x, std::span<const int32_t> positions, int head_dim,
                    const RopeParams& rope) = 0;
  // outs[i] = n(x) * ws[i]^T (+ *biases[i], when not null), n(x) = rmsnorm(x) with `norm`, or x
  // when norm is null: several projections of one input (q, k and v) that a backend may compute
  // in one pass. The default normalizes into a scratch first.
  virtual void matmul_many(const Tensor& x, const InputNorm* norm, std::span<const Tensor> ws,
                           std::span<const Tensor* const> biases, std::span<const Tensor> outs);
  // out += x * w^T (+ bias): a projection onto the residual stream. The default goes through a
  // scratch and add.
  virtual void matmul_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out);
  // out = silu(gate) * up, element-wise.
  virtual void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  // The feed-forward's first half, fused where the backend can: out = swiglu(n(x) * w_gate^T,
  // n(x) * w_up^T), n as in matmul_many, with w = [w_gate; w_up] stacked, (2 * features, in); out
  // (n, features). The default is matmul into a scratch (n, 2 * features), then swiglu.
  virtual void matmul_swiglu(const Tensor& x, const InputNorm* norm, const Tensor& w,
                             const Tensor& out);
  // x += y, element-wise.
  virtual void add(const Tensor& x, const Tensor& y) = 0;
  // Causal GQA attention: q (q_len, heads*head_dim), k/v (kv_len, kv_heads*head_dim),
  // out (q_len, heads*head_dim). Never materializes the q_len x kv_len score matrix.
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionShape& shape, const Tensor& out) = 0;
  // Waits for queued work (a no-op on the CPU).
  virtual void synchronize() {}

  // --- Index tensors and the decode-step ops that read them -----------------------------------
  // A decode step is recorded once and replayed at every position (CUDA graphs), so its token
  // ids and positions live in backend memory as I32 "index tensors" (n, 1), read when the work
  // runs. The host writes them with write_ints (queued, no wait) and reads sampled ids back with
  // read_ints (the one wait per token), or with an IntsReadback of n ints (the default reads at
  // queue(); the CUDA one copies into pinned memory behind the queued work).
  virtual DeviceArray alloc_ints(int64_t n) = 0;
  virtual void write_ints(const Tensor& dst, std::span<const int32_t> values) = 0;
  virtual std::vector<int32_t> read_ints(const Tensor& src) = 0;
  virtual std::unique_ptr<IntsReadback> ints_readback(int64_t n);
  // embedding() with ids (T, 1) in backend memory (validated by whoever wrote them).
  virtual void embedding_at(const Tensor& ids, const Tensor& table, const Tensor& out) = 0;
  // rope() with positions (T, 1) in backend memory.
  virtual void rope_at(const Tensor& x, const Tensor& positions, int head_dim,
                       const RopeParams& rope) = 0;
  // dst rows [*first, *first + src.rows) = src, `first` a (1, 1) index tensor (the caller keeps
  // that inside dst).
  virtual void copy_rows_at(const Tensor& src, const Tensor& dst, const Tensor& first) = 0;
  // The decode step's RoPE and KV append in one pass where the backend can: q (T, heads *
  // head_dim) is rotated in place at positions (T, 1); token t's rotated key goes to row
  // positions[t] of keys and its value to row positions[t] of values (keys, values: (capacity,
  // kv_heads * head_dim), the layer's whole cache). k (T, kv_heads * head_dim) is scratch: it may
  // be left rotated or not. The default is rope_at twice and a copy_rows_at per row.
  virtual void rope_store_at(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& positions, int head_dim, const RopeParams& rope,
                             const Tensor& keys, const Tensor& values);
  // attention() whose q_start is read from the (1, 1) index tensor `q_start` when it runs; keys
  // [0, q_start + q_len) are attended and shape.kv_len (<= k.rows) bounds that length.
  virtual void attention_at(const Tensor& q, const Tensor& k, const Tensor& v,
                            const AttentionShape& shape, const Tensor& q_start,
                            const Tensor& out) = 0;
  // A recorded decode step of B sequences whose caches store rows as given, one row each: row b
  // of q, k and v is sequence b's new token, at position positions[b] of its own tables keys[b]
  // and values[b] ((capacity, kv_heads * head_dim) each). It is rope_store_at of row b into
  // keys[b] / values[b], then attention_at of row b of q over them into row b of out (shape.q_len
  // 1; shape.kv_len bounds every table; positions[b] < min(keys[b].rows, shape.kv_len) is the
  // caller's to keep); q and k may be left rotated or not. One pass for the whole batch where the
  // backend can (a launch per sequence costs more than a short cache's attention); the default
  // goes row by row.
  virtual void rope_store_attention_batch_at(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const Tensor& positions, int head_dim,
                                             const RopeParams& rope, std::span<const Tensor> keys,
                                             std::span<const Tensor> values,
                                             const AttentionShape& shape, const Tensor& out);
  // Tokens a prefill runs at once: enough rows to fill the device (on CUDA, a chunk's attention
  // needs ~2 blocks of 128 query rows per SM and KV head group), few enough to bound the
  // activations (Transformer::activation_bytes).
  virtual int64_t prefill_chunk_rows() const { return 512; }
  // Scratch bytes one attention/attention_at call of `shape` allocates (split-K partial sums);
  // a recording keeps every call's, so batch sizing counts them per layer and sequence.
  virtual int64_t attention_workspace_bytes(const AttentionShape& shape) const {
    (void)shape;
    return 0;
  }
  // ids(r) = the token drawn from logits row r by the rule of engine/sampler.h (greedy when
  // temperature == 0, else softmax(logits / temperature) cut to top_k, then to the smallest
  // prefix of mass >= top_p, sampled with uniforms[r] in [0, 1)). logits (B, vocab), ids (B, 1).
  virtual void sample(const Tensor& logits, float temperature, int top_k, float top_p,
                      std::span<const float> uniforms, const Tensor& ids) = 0;
  // Records the work `queue` queues for replay; nullptr when this backend cannot record (then
  // the caller queues the work itself every time). What `queue` allocates and frees stays
  // reserved for the recording while it lives.
  virtual std::unique_ptr<Recording> record(const std::function<void()>& queue) {
    (void)queue;
    return nullptr;
  }
  // Bytes the backend can still allocate (device memory free + cached), for up-front size
  // checks; the CPU reports its physical memory.
  virtual int64_t available_bytes() = 0;
};

// "cpu" always; "cuda" when compiled in and a GPU is present; "auto" picks cuda if possible.
std::unique_ptr<Backend> make_backend(const std::string& device, int threads);

}  // namespace kvo
