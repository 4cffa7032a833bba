// The CUDA sparse KV policies (cuda_sparse_policy.h): their class, internal to kv/cuda. The
// algorithms and regions are the CPU reference's (sparse.cpp, kv_layout.h); this policy places
// them:
//   device   exact sinks/local + generated K/V, outlier chunks, landmarks (yakv: encoded; shadowkv:
//            bf16 means; quest: page bounds + the whole cache), shadowkv's U and SV^T, and one
//            layer's attended K/V (the attention buffers) plus the fetch scratch
//   host     yakv's pre-RoPE keys and values, shadowkv's values: encoded records in pinned host
//            memory mapped into the device's address space
// Decode, per layer, queued on the policy's own stream, forked from the backend's stream where
// the layer's inputs are ready (inputs_ready: every sequence of a batch forks from the same
// point, so their selections, fetches and attentions run side by side and fill the GPU) and
// joined back after the attention; no host sync:
//   append the new K/V -> score the landmarks -> softmax / sum / group aggregate -> top-k per KV
//   head -> merge with the outliers in position order -> list the records to fetch (a store
//   record spanning all heads is fetched once per token for the union of the heads' selections)
//   -> values on a second stream: gather over PCIe, decode, scatter; keys on the main stream:
//   gather, decode (shadowkv: rebuild U x SV^T), re-RoPE, scatter -> attention over
//   [sinks, outliers + selected, local, generated].
// Every launch of a decode step has a size fixed at finish_prefill and reads the step's position
// from device memory (the attention its key count too), so the engine records a step once and
// replays it (attend_at, CUDA graphs); an eager attend() writes its position there first.
// Its members are defined by three files: cuda_sparse_prefill.cpp (finish_prefill: landmarks,
// outliers, the offloaded stores, the decode buffers), cuda_sparse_decode.cpp (a decode step:
// selection, the fetch cache, the gathers, the attention) and cuda_sparse_policy.cpp (copies,
// the memory report, diagnostics, the factory).
#pragma once
#ifdef KVO_HAVE_CUDA
#include <cublas_v2.h>
#include <cusolverDn.h>

#include "backend/cuda/attention.h"
#include "backend/cuda/cuda_backend.h"
#include "kv/cuda/buffers.h"
#include "kv/cuda/cuda_sparse_policy.h"
#include "kv/cuda/sparse_kernels.h"
#include "kv/kv_layout.h"
#include "kv/sparse_setup.h"
#include "model/rope.h"
#include "quant/cuda/device_quantizer.h"
#include "quant/residual.h"
#include "util/error.h"

namespace kvo::cuda_sparse {

using cuda::bf16;
using cuda::DeviceBuffer;
using cuda::MappedHostBuffer;
namespace qc = quant::cuda;

inline void check_cublas(cublasStatus_t s, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error {} in {}", int(s), call);
}

inline void check_cusolver(cusolverStatus_t s, const char* call) {
  if (s != CUSOLVER_STATUS_SUCCESS) fail("cuSOLVER error {} in {}", int(s), call);
}

inline bf16* rows_of(const DeviceArray& a, int64_t first = 0) {
  return static_cast<bf16*>(a.tensor().data) + first * a.tensor().cols;
}

// rows x cols bf16, contiguous both sides.
inline void copy_rows(const bf16* src, bf16* dst, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows > 0)
    KVO_CUDA(
        cudaMemcpyAsync(dst, src, size_t(rows * cols) * sizeof(bf16), cudaMemcpyDeviceToDevice, s));
}

// Residual landmarks of two HIGGS quantizers (quant::residual_higgs_parts) are scored in the
// rotated domain like plain HIGGS ones: score(q, meta + res) = score(q, meta) + score(q, res).
// On the device their records are kept apart, every head's meta records (H, ceil(m / group))
// then every head's residual records (H, m): the same bytes as the quantizer's blocks, regrouped.
struct ResidualHiggs : quant::ResidualHiggsParts {
  // The bytes of all heads' meta records for m landmarks each.
  size_t meta_bytes(int H, int64_t m, int D) const {
    return size_t(H) * meta->encoded_bytes(size_t(metas(m)), size_t(D));
  }
};

class CudaSparsePolicy final : public KvPolicy, public KvDiagnosable, private SparseSetup {
 public:
  CudaSparsePolicy(Backend& backend, const ModelConfig& config, const KvSpec& spec,
                   int64_t capacity)
      : SparseSetup(config, spec),
        backend_(backend),
        cfg_(config),
        spec_(spec),
        capacity_(capacity),
        rope_(make_rope_params(config)),
        stream_(cuda_stream_of(backend)),
        residual_lm_{landmark_q_ ? quant::residual_higgs_parts(*landmark_q_, config.head_dim)
                                 : quant::ResidualHiggsParts{}} {
    layers_.resize(size_t(config.num_layers));
    step_index_ = backend.alloc_ints(1);
    shifted_index_ = backend.alloc_ints(2);
    inv_freq_ = DeviceBuffer<float>(rope_.inv_freq.size());
    KVO_CUDA(cudaMemcpy(inv_freq_.get(), rope_.inv_freq.data(), inv_freq_.nbytes(),
                        cudaMemcpyHostToDevice));
    KVO_CUDA(cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, 0));
    KVO_CUDA(cudaStreamCreateWithFlags(&work_, cudaStreamNonBlocking));
    KVO_CUDA(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
    for (cudaEvent_t* e : {&inputs_, &done_, &selected_, &values_ready_})
      KVO_CUDA(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
    if (method_ == SparseMethod::ShadowKV) {
      check_cublas(cublasCreate(&cublas_), "cublasCreate");
      // An own workspace: cuBLAS must not allocate while a decode step is being recorded.
      cublas_ws_ = DeviceBuffer<uint8_t>(size_t{32} << 20);
      check_cublas(cublasSetWorkspace(cublas_, cublas_ws_.get(), cublas_ws_.size()),
                   "cublasSetWorkspace");
    }
  }

  ~CudaSparsePolicy() override {
    for (cudaStream_t s : {stream_, work_, side_}) cudaStreamSynchronize(s);
    if (cublas_) cublasDestroy(cublas_);
    for (cudaEvent_t e : {inputs_, done_, selected_, values_ready_}) cudaEventDestroy(e);
    cudaStreamDestroy(work_);
    cudaStreamDestroy(side_);
  }

  std::string name() const override { return spec_.method; }
  bool wants_pre_rope_keys() const override { return method_ != SparseMethod::Quest; }
  // Every decode launch has a size fixed at finish_prefill; the step's position comes from
  // device memory. Diagnostics read results back on the host per step, so they run eagerly.
  bool recordable() const override { return !diag_enabled_; }
  int64_t length() const override { return length_; }
  int64_t capacity() const override { return capacity_; }

  void enable_diagnostics() override { diag_enabled_ = true; }
  const std::vector<KvHeadDiagnostics>& diagnostics() const override { return diag_; }
  std::string layout_summary() const override {
    return finished_ ? describe(spec_, lay_, prompt_) + " [cuda]" : "";
  }

  void inputs_ready() override {
    if (!finished_) return;  // the prefill runs on the backend's stream
    KVO_CUDA(cudaEventRecord(inputs_, stream_));
    inputs_recorded_ = true;
  }

  void attend(int layer, int64_t start, const Tensor& q, const Tensor& k_pre, const Tensor& k,
              const Tensor& v, const Tensor& out) override {
    const int64_t n = q.rows;
    check(start + n <= capacity_, "the sequence needs {} tokens but the KV cache holds {}",
          start + n, capacity_);
    if (!finished_) {
      prefill_attend(layer, start, q, k_pre, k, v, out);
    } else {
      check(start >= prompt_, "internal: a prompt token after finish_prefill");
      if (start != step_index_start_) {
        backend_.write_ints(step_index_.tensor(), std::vector<int32_t>{int32_t(start)});
        step_index_start_ = start;
        inputs_recorded_ = false;  // the step forks after this write
      }
      decode_attend(layer, step_index_.tensor(), q, k, v, out);
      if (diag_enabled_) record_diagnostics(layer, start, q, k, v, out);
      if (layer == 0) ++decode_steps_;
    }
    if (layer == cfg_.num_layers - 1) length_ = start + n;
  }

  void attend_at(int layer, const Tensor& position, const Tensor& q, const Tensor& /*k_pre*/,
                 const Tensor& k, const Tensor& v, const Tensor& out) override {
    check(finished_, "internal: a recorded step before finish_prefill");
    decode_attend(layer, position, q, k, v, out);
  }

  void recorded_step_done(int64_t length) override {
    check(length <= capacity_, "the sequence needs {} tokens but the KV cache holds {}", length,
          capacity_);
    length_ = length;
    ++decode_steps_;
  }

  void finish_prefill() override;
  void copy_from(const KvPolicy& prefilled) override;
  KvMemoryReport memory() const override;

 private:
  struct Layer {
    // yakv/shadowkv: (sink + local tokens + capacity - T, W) = [sinks | local | generated];
    // quest: (capacity, W), every token.
    DeviceArray keys, values;
    DeviceArray out_k, out_v;                  // (H * O * C, D)
    DeviceBuffer<int32_t> outliers;            // (H, O) ascending per head
    DeviceBuffer<int32_t> cand;                // (H, m) ascending per head; empty when O == 0
    DeviceArray lm;                            // shadowkv (H * m, D); quest page bounds (m, 2W)
    DeviceBuffer<uint8_t> lm_q;                // yakv: H blocks of encoded landmarks
    DeviceArray u, vt;                         // shadowkv: (middle tokens, r), (r, W)
    MappedHostBuffer store_k, store_v;         // host records of the middle tokens
    DeviceBuffer<uint8_t> scales_k, scales_v;  // their scales (store_scale_bytes each), if any
    // The fetch cache, two sets used by turns (sparse_kernels.h match_cached_records): record
    // lists (2, max_fetch; -1 before any step) and the records, whole (2, max_fetch,
    // store_record_bytes) per offloaded tensor.
    DeviceBuffer<int32_t> cached_list;
    DeviceBuffer<uint8_t> cached_k, cached_v;
    std::vector<float> diag_k, diag_v;  // diagnostics: exact (capacity, W), prompt + generated
  };

  void prefill_attend(int layer, int64_t start, const Tensor& q, const Tensor& k_pre,
                      const Tensor& k, const Tensor& v, const Tensor& out) {
    const int64_t n = q.rows;
    if (st_k_.empty()) allocate_staging();
    Tensor keys = staging_rows(st_k_[layer]), values = staging_rows(st_v_[layer]);
    backend_.copy(k, keys.row_range(start, n));
    backend_.copy(v, values.row_range(start, n));
    if (!st_kpre_.empty()) backend_.copy(k_pre, staging_rows(st_kpre_[layer]).row_range(start, n));
    const AttentionShape shape{Hq_, H_, D_, n, start, start + n, scale()};
    backend_.attention(q, keys.row_range(0, start + n), values.row_range(0, start + n), shape, out);
  }

  // The prefill's exact K/V (and pre-RoPE keys), `capacity` rows per layer, allocated by the first
  // prompt token (a copied policy never holds them) and outside the backend's caching allocator,
  // so that finish_prefill hands the memory back to the device for the other sequences.
  void allocate_staging() {
    for (int l = 0; l < cfg_.num_layers; ++l) {
      st_k_.emplace_back(size_t(capacity_ * W_));
      st_v_.emplace_back(size_t(capacity_ * W_));
      if (method_ != SparseMethod::Quest) st_kpre_.emplace_back(size_t(capacity_ * W_));
    }
  }
  Tensor staging_rows(const DeviceBuffer<bf16>& b) const {
    return {b.get(), DType::BF16, capacity_, W_, W_};
  }

  int64_t outliers_per_head() const {
    return method_ == SparseMethod::Quest ? 0 : lay_.outlier_chunks;
  }
  int64_t slots() const { return outliers_per_head() + lay_.selected_chunks; }
  // Records fetched per layer and step at most (spanning records: one per selected token).
  int64_t max_fetch() const { return lay_.fetch_records; }
  int64_t record_dim() const { return lay_.store_spans_heads ? W_ : D_; }

  // The decode attention of n new tokens over the assembled buffers; the caller sets q, out and
  // q_start_at.
  cuda::AttentionArgs attention_args(int64_t n) const {
    cuda::AttentionArgs a;
    a.k = rows_of(attn_k_);
    a.k_stride = attn_k_.tensor().stride;
    a.v = rows_of(attn_v_);
    a.v_stride = attn_v_.tensor().stride;
    a.num_heads = Hq_;
    a.num_kv_heads = H_;
    a.head_dim = D_;
    a.q_len = n;
    a.kv_len = attn_k_.tensor().rows;
    a.scale = scale();
    return a;
  }

  void build_layer(int l);
  void build_shadowkv_factors(Layer& L, const bf16* kpre);
  void allocate_decode_buffers();
  void select(Layer& L, const Tensor& q);
  // Which of the listed records the latest step fetched (the fetch cache), on work_.
  void match_cached(Layer& L, int layer);
  // Fetches the listed records of `store` into `decoded` on stream s: the hits from `cache`,
  // which then holds this step's records.
  void fetch(const MappedHostBuffer& store, const DeviceBuffer<uint8_t>& scales, int layer,
             DeviceBuffer<uint8_t>& cache, DeviceBuffer<uint8_t>& staging,
             DeviceBuffer<bf16>& decoded, cudaStream_t s);
  void regroup_residual_landmarks(const uint8_t* blocks, int64_t m, uint8_t* out);
  // One decode step of `layer` for the tokens at *position .. (a (1, 1) index tensor).
  void decode_attend(int layer, const Tensor& position, const Tensor& q, const Tensor& k,
                     const Tensor& v, const Tensor& out);
  void record_diagnostics(int layer, int64_t start, const Tensor& q, const Tensor& k,
                          const Tensor& v, const Tensor& out);

  Backend& backend_;
  ModelConfig cfg_;
  KvSpec spec_;
  int64_t capacity_;
  RopeParams rope_;
  // stream_: the backend's; work_: this policy's decode steps; side_: their value fetches.
  cudaStream_t stream_, work_ = nullptr, side_ = nullptr;
  ResidualHiggs residual_lm_;
  // inputs_: where a decode step forks from stream_ (recorded by inputs_ready when the caller
  // calls it: inputs_recorded_); done_: where stream_ joins it back.
  cudaEvent_t inputs_ = nullptr, done_ = nullptr, selected_ = nullptr, values_ready_ = nullptr;
  bool inputs_recorded_ = false;
  int num_sms_ = 0;
  cublasHandle_t cublas_ = nullptr;
  DeviceBuffer<uint8_t> cublas_ws_;
  std::vector<DeviceBuffer<bf16>> st_k_, st_v_, st_kpre_;  // (capacity, W) per layer
  std::vector<Layer> layers_;
  DeviceBuffer<float> inv_freq_;
  KvLayout lay_;
  bool finished_ = false;
  int64_t length_ = 0, prompt_ = 0;

  // Decode scratch shared by the layers (one layer runs at a time).
  DeviceArray attn_k_, attn_v_;           // (exact prompt + S * C + capacity - T, W)
  DeviceBuffer<uint8_t> attn_ws_;         // the attention's split-key workspace
  DeviceBuffer<uint32_t> attn_counters_;  // and its split counters (zeroed; work_ orders them)
  DeviceBuffer<float> logits_;            // (n * Hq, m)
  DeviceBuffer<float2> stats_;            // (n * Hq)
  DeviceBuffer<float> agg_;               // (H, m)
  DeviceBuffer<int32_t> selected_idx_, slot_chunk_, slot_src_;  // (H, k), (H, S), (H, S)
  DeviceBuffer<int32_t> flags_, pos_, list_;  // (middle tokens), (middle tokens), (max_fetch)
  DeviceBuffer<int32_t> listed_;  // (layers): spanning records listed at the latest step
  // (layers): records fetched over PCIe by all decode steps, where the steps count them: the
  // cache's misses, or without the cache the spanning records listed (per-head lists: a fixed
  // length, counted on the host).
  DeviceBuffer<unsigned long long> fetched_total_;
  int64_t decode_steps_ = 0;            // since the prefill
  DeviceBuffer<int32_t> hit_;           // (max_fetch): row in the fetch cache, or -1
  DeviceBuffer<int32_t> cache_phase_;   // (1): which set of the fetch caches a step fills
  DeviceBuffer<int32_t> cached_count_;  // (layers, 2): the spanning records each set holds
  DeviceBuffer<uint8_t> scan_ws_, staging_k_, staging_v_;
  DeviceBuffer<bf16> decoded_k_, decoded_v_;  // (max_fetch, record dim)
  DeviceBuffer<bf16> lm_decoded_;             // yakv landmarks scored decoded (H * m, D)
  DeviceBuffer<float> meta_logits_;           // residual HIGGS landmarks (n * Hq, metas)
  DeviceBuffer<bf16> u_sel_;                  // shadowkv (H * k * C, r)
  DeviceBuffer<float> rebuilt_;               // shadowkv (H * k * C, D)
  DeviceArray step_index_;                    // (1, 1): the position of an eager step
  int64_t step_index_start_ = -1;             // what step_index_ holds
  DeviceArray shifted_index_;  // (2, 1): the row the new tokens go to in `keys`, the attention's
                               // q_start in the assembled buffers

  bool diag_enabled_ = false;
  std::vector<KvHeadDiagnostics> diag_;
};

}  // namespace kvo::cuda_sparse
#endif  // KVO_HAVE_CUDA
