// CUDA sparse KV policies (cuda_sparse_policy.h). The algorithms and regions are the CPU
// reference's (sparse.cpp, kv_layout.h); this file places them:
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
#ifdef KVO_HAVE_CUDA
#include "kv/cuda/cuda_sparse_policy.h"

#include <cublas_v2.h>
#include <cusolverDn.h>

#include <cmath>
#include <numeric>

#include "backend/cuda/attention.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kernels.h"
#include "kv/cuda/buffers.h"
#include "kv/cuda/sparse_kernels.h"
#include "kv/head_diagnostics.h"
#include "kv/kv_layout.h"
#include "kv/kv_store.h"
#include "kv/sparse_setup.h"
#include "model/rope.h"
#include "quant/cuda/device_quantizer.h"
#include "quant/higgs.h"
#include "quant/residual.h"
#include "util/error.h"

namespace kvo {
namespace {

using cuda::bf16;
using cuda::DeviceBuffer;
using cuda::MappedHostBuffer;
namespace qc = quant::cuda;

void check_cublas(cublasStatus_t s, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error {} in {}", int(s), call);
}

void check_cusolver(cusolverStatus_t s, const char* call) {
  if (s != CUSOLVER_STATUS_SUCCESS) fail("cuSOLVER error {} in {}", int(s), call);
}

bf16* rows_of(const DeviceArray& a, int64_t first = 0) {
  return static_cast<bf16*>(a.tensor().data) + first * a.tensor().cols;
}

// rows x cols bf16, contiguous both sides.
void copy_rows(const bf16* src, bf16* dst, int64_t rows, int64_t cols, cudaStream_t s) {
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

void CudaSparsePolicy::finish_prefill() {
  if (finished_) return;
  prompt_ = length_;
  lay_ = plan_kv_layout(spec_, cfg_, prompt_, capacity_, 2);
  if (st_k_.empty()) allocate_staging();
  for (int l = 0; l < cfg_.num_layers; ++l) build_layer(l);
  KVO_CUDA(cudaStreamSynchronize(stream_));  // the staging may go only after its last reader
  st_k_.clear();
  st_v_.clear();
  st_kpre_.clear();
  allocate_decode_buffers();
  finished_ = true;
}

void CudaSparsePolicy::build_layer(int l) {
  Layer& L = layers_[size_t(l)];
  const int64_t T = prompt_, C = lay_.chunk, M = lay_.middle_chunks, m = lay_.landmark_chunks;
  const int64_t O = outliers_per_head(), s_end = lay_.sink_end, mid = lay_.middle_tokens();
  const int64_t gen = capacity_ - T;
  const bf16* K = st_k_[size_t(l)].get();
  if (diag_enabled_) {
    L.diag_k = T ? backend_.download(staging_rows(st_k_[size_t(l)]).row_range(0, T)) : L.diag_k;
    L.diag_v = T ? backend_.download(staging_rows(st_v_[size_t(l)]).row_range(0, T)) : L.diag_v;
    L.diag_k.resize(size_t(capacity_ * W_));
    L.diag_v.resize(size_t(capacity_ * W_));
  }
  if (method_ == SparseMethod::Quest) {  // the whole cache stays
    L.keys = backend_.alloc(capacity_, W_);
    L.values = backend_.alloc(capacity_, W_);
    backend_.copy(staging_rows(st_k_[size_t(l)]), L.keys.tensor());
    backend_.copy(staging_rows(st_v_[size_t(l)]), L.values.tensor());
    L.lm = backend_.alloc(m, 2 * W_);
    cuda::page_bounds(rows_of(L.keys), s_end, m, int(C), W_, rows_of(L.lm), stream_);
    return;
  }
  const bf16* V = st_v_[size_t(l)].get();
  const int64_t n_exact = lay_.exact_prompt_tokens();
  L.keys = backend_.alloc(n_exact + gen, W_);
  L.values = backend_.alloc(n_exact + gen, W_);
  copy_rows(K, rows_of(L.keys), s_end, W_, stream_);
  copy_rows(V, rows_of(L.values), s_end, W_, stream_);
  copy_rows(K + lay_.local_start * W_, rows_of(L.keys, s_end), T - lay_.local_start, W_, stream_);
  copy_rows(V + lay_.local_start * W_, rows_of(L.values, s_end), T - lay_.local_start, W_, stream_);

  // Landmarks and outliers from the chunk means of the post-RoPE keys.
  DeviceBuffer<float> means{size_t(H_ * M * D_)}, min_cos{size_t(O > 0 ? H_ * M : 0)};
  cuda::chunk_means(K, s_end, M, int(C), H_, D_, means.get(), O > 0 ? min_cos.get() : nullptr,
                    stream_);
  if (O > 0) {  // without outliers the candidates are every chunk (cand stays empty)
    L.outliers = DeviceBuffer<int32_t>(size_t(H_ * O));
    L.cand = DeviceBuffer<int32_t>(size_t(H_ * m));
    cuda::top_k_rows(min_cos.get(), H_, M, O, /*negate=*/true, L.outliers.get(), stream_);
    cuda::candidate_chunks(L.outliers.get(), H_, M, O, L.cand.get(), stream_);
  }
  L.out_k = backend_.alloc(H_ * O * C, D_);
  L.out_v = backend_.alloc(H_ * O * C, D_);
  cuda::gather_outlier_rows(K, L.outliers.get(), s_end, H_, O, int(C), D_, rows_of(L.out_k),
                            stream_);
  cuda::gather_outlier_rows(V, L.outliers.get(), s_end, H_, O, int(C), D_, rows_of(L.out_v),
                            stream_);
  DeviceArray lm = backend_.alloc(H_ * m, D_);
  cuda::candidate_landmarks(means.get(), L.cand.get(), H_, M, m, D_, rows_of(lm), stream_);
  if (method_ == SparseMethod::ShadowKV) {
    L.lm = std::move(lm);
  } else if (m > 0) {
    // One call per head: residual landmarks group consecutive vectors, which must not mix heads.
    const size_t per_head = landmark_q_->encoded_bytes(size_t(m), size_t(D_));
    L.lm_q = DeviceBuffer<uint8_t>(per_head * H_);
    DeviceBuffer<uint8_t> blocks(residual_lm_.residual ? per_head * H_ : 0);
    uint8_t* enc = residual_lm_.residual ? blocks.get() : L.lm_q.get();
    for (int h = 0; h < H_; ++h)
      qc::encode_bf16(*landmark_q_, reinterpret_cast<const uint16_t*>(rows_of(lm, h * m)), D_,
                      size_t(m), size_t(D_), enc + h * per_head, stream_);
    if (residual_lm_.residual) regroup_residual_landmarks(blocks.get(), m, L.lm_q.get());
  }

  // The host stores: encode on the device, split off the scales that stay on the device
  // (kv_layout.h), then one copy into the pinned records.
  auto offload = [&](const bf16* X, MappedHostBuffer& dst, DeviceBuffer<uint8_t>& scales) {
    if (mid == 0) return;
    const int64_t n = lay_.store_spans_heads ? mid : mid * H_;
    const int64_t dim = record_dim(), rec = lay_.store_record_bytes;
    const int64_t host = lay_.store_host_bytes();
    dst = MappedHostBuffer(size_t(n * host));
    DeviceBuffer<uint8_t> enc(size_t(n * rec)), parts;
    qc::encode_bf16(*store_, reinterpret_cast<const uint16_t*>(X + s_end * W_), dim, size_t(n),
                    size_t(dim), enc.get(), stream_);
    if (host < rec) {
      parts = DeviceBuffer<uint8_t>(size_t(n * host));
      scales = DeviceBuffer<uint8_t>(size_t(n * (rec - host)));
      cuda::split_records(enc.get(), n, rec, host, parts.get(), scales.get(), stream_);
    }
    KVO_CUDA(cudaMemcpyAsync(dst.host(), host < rec ? parts.get() : enc.get(), size_t(n * host),
                             cudaMemcpyDeviceToHost, stream_));
    KVO_CUDA(cudaStreamSynchronize(stream_));  // `enc` and `parts` are freed on return
  };
  offload(V, L.store_v, L.scales_v);
  if (method_ == SparseMethod::YAKV) offload(st_kpre_[size_t(l)].get(), L.store_k, L.scales_k);
  if (method_ == SparseMethod::ShadowKV && mid > 0)
    build_shadowkv_factors(L, st_kpre_[size_t(l)].get());
  KVO_CUDA(cudaStreamSynchronize(stream_));  // the chunk statistics are freed on return
}

// Rank-r factors of the layer's pre-RoPE keys (low_rank.h's method on the GPU): the fp32 Gram
// matrix K^T K (cuBLAS), its eigenvectors (cuSOLVER syevd), U' = K V_r for the middle rows.
void CudaSparsePolicy::build_shadowkv_factors(Layer& L, const bf16* kpre) {
  const int64_t T = prompt_, r = lay_.rank, mid = lay_.middle_tokens();
  const int w = int(W_);
  DeviceBuffer<float> gram{size_t(W_ * W_)}, eig{size_t(W_)};
  const float one = 1.0f, zero = 0.0f;
  check_cublas(cublasSetStream(cublas_, stream_), "cublasSetStream");
  // Row-major K (T, W) is column-major K^T (W, T): gram = K^T (K^T)^T.
  check_cublas(cublasGemmEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, w, w, int(T), &one, kpre,
                            CUDA_R_16BF, w, kpre, CUDA_R_16BF, w, &zero, gram.get(), CUDA_R_32F, w,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "gram");
  cusolverDnHandle_t solver = nullptr;
  check_cusolver(cusolverDnCreate(&solver), "cusolverDnCreate");
  struct Guard {
    cusolverDnHandle_t h;
    ~Guard() { cusolverDnDestroy(h); }
  } guard{solver};
  check_cusolver(cusolverDnSetStream(solver, stream_), "cusolverDnSetStream");
  int lwork = 0;
  check_cusolver(
      cusolverDnSsyevd_bufferSize(solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, w,
                                  gram.get(), w, eig.get(), &lwork),
      "syevd_bufferSize");
  DeviceBuffer<float> work(size_t(std::max(lwork, 1)));
  DeviceBuffer<int> info(1);
  check_cusolver(cusolverDnSsyevd(solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, w,
                                  gram.get(), w, eig.get(), work.get(), lwork, info.get()),
                 "syevd");
  int info_host = 0;
  KVO_CUDA(cudaMemcpyAsync(&info_host, info.get(), sizeof(int), cudaMemcpyDeviceToHost, stream_));
  KVO_CUDA(cudaStreamSynchronize(stream_));
  check(info_host == 0, "SVD of the keys failed (cuSOLVER syevd info {})", info_host);
  L.vt = backend_.alloc(r, W_);
  cuda::top_eigenvectors(gram.get(), W_, r, rows_of(L.vt), stream_);
  // U' (mid, r) row-major = column-major (r, mid) = Vt (r, W) x K_mid^T (W, mid).
  L.u = backend_.alloc(mid, r);
  check_cublas(
      cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(r), int(mid), w, &one, rows_of(L.vt),
                   CUDA_R_16BF, w, kpre + lay_.sink_end * W_, CUDA_R_16BF, w, &zero, rows_of(L.u),
                   CUDA_R_16BF, int(r), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "U = K V");
  KVO_CUDA(cudaStreamSynchronize(stream_));  // the workspaces are freed on return
}

void CudaSparsePolicy::allocate_decode_buffers() {
  const int64_t m = lay_.landmark_chunks, k = lay_.selected_chunks, S = slots();
  const int64_t C = lay_.chunk, mid = lay_.middle_tokens();
  const int64_t attn_rows = lay_.exact_prompt_tokens() + S * C + capacity_ - prompt_;
  attn_k_ = backend_.alloc(attn_rows, W_);
  attn_v_ = backend_.alloc(attn_rows, W_);
  attn_ws_ =
      DeviceBuffer<uint8_t>(size_t(cuda::attention_workspace_bytes(attention_args(1), num_sms_)));
  attn_counters_ = DeviceBuffer<uint32_t>(size_t(H_));
  KVO_CUDA(cudaMemsetAsync(attn_counters_.get(), 0, attn_counters_.nbytes(), work_));
  agg_ = DeviceBuffer<float>(size_t(H_ * m));
  selected_idx_ = DeviceBuffer<int32_t>(size_t(H_ * k));
  slot_chunk_ = DeviceBuffer<int32_t>(size_t(H_ * S));
  slot_src_ = DeviceBuffer<int32_t>(size_t(H_ * S));
  if (k >= m && m > 0) {  // every candidate is attended: the selection never changes
    std::vector<int32_t> all(size_t(H_ * m));
    for (int h = 0; h < H_; ++h) std::iota(all.begin() + h * m, all.begin() + (h + 1) * m, 0);
    KVO_CUDA(cudaMemcpy(selected_idx_.get(), all.data(), all.size() * 4, cudaMemcpyHostToDevice));
  }
  if (k < m) {  // one token's scores; a recorded step must not allocate
    logits_ = DeviceBuffer<float>(size_t(Hq_ * m));
    stats_ = DeviceBuffer<float2>(size_t(Hq_));
  }
  for (const quant::Quantizer* q : {store_.get(), landmark_q_.get()})
    if (q) qc::prepare(*q);
  // Every fill below is queued on work_, which the decode steps run on (side_ waits on it).
  auto fill = [&](auto& buffer, int byte) {
    KVO_CUDA(cudaMemsetAsync(buffer.get(), byte, buffer.nbytes(), work_));
  };
  const size_t layers = size_t(cfg_.num_layers);
  decode_steps_ = 0;
  fetched_total_ = DeviceBuffer<unsigned long long>(layers);
  fill(fetched_total_, 0);
  if (method_ == SparseMethod::Quest || k == 0) return;
  const int64_t nf = max_fetch();
  list_ = DeviceBuffer<int32_t>(size_t(nf));
  if (lay_.fetch_cache) {
    hit_ = DeviceBuffer<int32_t>(size_t(nf));
    cache_phase_ = DeviceBuffer<int32_t>(1);
    fill(cache_phase_, 0);
    for (Layer& L : layers_) {
      L.cached_list = DeviceBuffer<int32_t>(size_t(2 * nf));
      fill(L.cached_list, 0xff);  // -1: no record
      L.cached_v = DeviceBuffer<uint8_t>(size_t(2 * nf * lay_.store_record_bytes));
      if (method_ == SparseMethod::YAKV)
        L.cached_k = DeviceBuffer<uint8_t>(size_t(2 * nf * lay_.store_record_bytes));
    }
  }
  if (lay_.store_spans_heads) {
    flags_ = DeviceBuffer<int32_t>(size_t(mid));
    pos_ = DeviceBuffer<int32_t>(size_t(mid));
    scan_ws_ = DeviceBuffer<uint8_t>(std::max<size_t>(cuda::scan_workspace_bytes(mid), 1));
    listed_ = DeviceBuffer<int32_t>(layers);
    fill(listed_, 0);
    if (lay_.fetch_cache) {
      cached_count_ = DeviceBuffer<int32_t>(2 * layers);
      fill(cached_count_, 0);
    }
  }
  // Zeroed once: rows past the fetched count are decoded too (their results are unused) and
  // must hold valid records.
  const size_t staging = size_t(nf * lay_.store_record_bytes);
  staging_v_ = DeviceBuffer<uint8_t>(staging);
  fill(staging_v_, 0);
  decoded_v_ = DeviceBuffer<bf16>(size_t(nf * record_dim()));
  if (method_ == SparseMethod::YAKV) {
    staging_k_ = DeviceBuffer<uint8_t>(staging);
    fill(staging_k_, 0);
    decoded_k_ = DeviceBuffer<bf16>(size_t(nf * record_dim()));
    if (residual_lm_.residual)
      meta_logits_ = DeviceBuffer<float>(size_t(Hq_ * residual_lm_.metas(m)));
    else if (!dynamic_cast<const quant::HiggsQuantizer*>(landmark_q_.get()))
      lm_decoded_ = DeviceBuffer<bf16>(size_t(H_ * m * D_));
  } else {
    u_sel_ = DeviceBuffer<bf16>(size_t(H_ * k * C * lay_.rank));
    rebuilt_ = DeviceBuffer<float>(size_t(H_ * k * C * D_));
  }
}

// blocks: H heads' residual landmark records as the quantizer writes them, per head ceil(m / g)
// blocks of [meta record | up to g residual records] -> out: the ResidualHiggs grouping. The
// full blocks of every head split in one launch each (split_records); a short last block by
// copies.
void CudaSparsePolicy::regroup_residual_landmarks(const uint8_t* blocks, int64_t m, uint8_t* out) {
  const ResidualHiggs& r = residual_lm_;
  const int64_t g = r.residual->m(), full = m / g, metas = r.metas(m);
  const int64_t meta_rec = int64_t(r.meta->encoded_bytes(1, size_t(D_)));
  const int64_t res_rec = int64_t(r.res->encoded_bytes(1, size_t(D_)));
  const int64_t per_head = int64_t(landmark_q_->encoded_bytes(size_t(m), size_t(D_)));
  uint8_t* res_out = out + r.meta_bytes(H_, m, D_);
  for (int h = 0; h < H_; ++h) {
    const uint8_t* head = blocks + h * per_head;
    uint8_t* meta_h = out + h * metas * meta_rec;
    uint8_t* res_h = res_out + h * m * res_rec;
    if (full > 0)
      cuda::split_records(head, full, meta_rec + g * res_rec, meta_rec, meta_h, res_h, stream_);
    if (metas > full) {  // the last block: one meta record and m - full * g residuals
      const uint8_t* last = head + full * (meta_rec + g * res_rec);
      KVO_CUDA(cudaMemcpyAsync(meta_h + full * meta_rec, last, size_t(meta_rec),
                               cudaMemcpyDeviceToDevice, stream_));
      KVO_CUDA(cudaMemcpyAsync(res_h + full * g * res_rec, last + meta_rec,
                               size_t((m - full * g) * res_rec), cudaMemcpyDeviceToDevice,
                               stream_));
    }
  }
}

// Landmark scores -> selected candidates (H, k) -> the attended middle chunks (H, S).
void CudaSparsePolicy::select(Layer& L, const Tensor& q) {
  const int64_t n = q.rows, m = lay_.landmark_chunks, k = lay_.selected_chunks;
  const bf16* qd = static_cast<const bf16*>(q.data);
  if (k < m) {
    logits_.reserve(size_t(n * Hq_ * m));
    stats_.reserve(size_t(n * Hq_));
    const auto* higgs = dynamic_cast<const quant::HiggsQuantizer*>(landmark_q_.get());
    const auto* q16 = reinterpret_cast<const uint16_t*>(qd);
    if (method_ == SparseMethod::YAKV && higgs) {
      qc::score_heads(*higgs, q16, q.stride, size_t(n), Hq_, G_, L.lm_q.get(), size_t(m),
                      size_t(D_), scale(), logits_.get(), work_);
    } else if (method_ == SparseMethod::YAKV && residual_lm_.residual) {
      const ResidualHiggs& r = residual_lm_;
      const int64_t metas = r.metas(m);
      meta_logits_.reserve(size_t(n * Hq_ * metas));
      qc::score_heads(*r.meta, q16, q.stride, size_t(n), Hq_, G_, L.lm_q.get(), size_t(metas),
                      size_t(D_), scale(), meta_logits_.get(), work_);
      qc::score_heads(*r.res, q16, q.stride, size_t(n), Hq_, G_,
                      L.lm_q.get() + r.meta_bytes(H_, m, D_), size_t(m), size_t(D_), scale(),
                      logits_.get(), work_);
      cuda::add_group_scores(meta_logits_.get(), n * Hq_, metas, r.residual->m(), logits_.get(), m,
                             work_);
    } else if (method_ == SparseMethod::YAKV) {
      const size_t per_head = landmark_q_->encoded_bytes(size_t(m), size_t(D_));
      for (int h = 0; h < H_; ++h)
        qc::decode_rows_bf16(
            *landmark_q_, L.lm_q.get() + h * per_head, size_t(m), nullptr, size_t(m), size_t(D_),
            reinterpret_cast<uint16_t*>(lm_decoded_.get() + h * m * D_), D_, work_);
      cuda::score_landmarks(qd, q.stride, n, Hq_, G_, lm_decoded_.get(), false, m, D_, scale(),
                            logits_.get(), work_);
    } else {
      cuda::score_landmarks(qd, q.stride, n, Hq_, G_, rows_of(L.lm), method_ == SparseMethod::Quest,
                            m, D_, scale(), logits_.get(), work_);
    }
    cuda::aggregate_scores(logits_.get(), n, Hq_, G_, m, spec_.agg() == GroupAgg::Mean,
                           stats_.get(), agg_.get(), work_);
    cuda::top_k_rows(agg_.get(), H_, m, k, false, selected_idx_.get(), work_);
  }
  cuda::merge_slots(L.outliers.get(), L.cand.get(), selected_idx_.get(), H_, outliers_per_head(), m,
                    k, slot_chunk_.get(), slot_src_.get(), work_);
}

void CudaSparsePolicy::match_cached(Layer& L, int layer) {
  const int64_t nf = max_fetch();
  const bool spans = lay_.store_spans_heads;
  cuda::match_cached_records(list_.get(), spans ? listed_.get() + layer : nullptr, nf,
                             spans ? 0 : lay_.selected_chunks * lay_.chunk, L.cached_list.get(),
                             spans ? cached_count_.get() + 2 * layer : nullptr, cache_phase_.get(),
                             hit_.get(), fetched_total_.get() + layer, work_);
}

void CudaSparsePolicy::fetch(const MappedHostBuffer& store, const DeviceBuffer<uint8_t>& scales,
                             int layer, DeviceBuffer<uint8_t>& cache,
                             DeviceBuffer<uint8_t>& staging, DeviceBuffer<bf16>& decoded,
                             cudaStream_t s) {
  const int64_t nf = max_fetch(), dim = record_dim();
  const bool cached = lay_.fetch_cache;
  cuda::gather_records(
      store.device(), lay_.store_host_bytes(), scales.get(), lay_.store_record_bytes, list_.get(),
      lay_.store_spans_heads ? listed_.get() + layer : nullptr, nf, cached ? hit_.get() : nullptr,
      cached ? cache.get() : nullptr, cache_phase_.get(), staging.get(), s);
  qc::decode_rows_bf16(*store_, staging.get(), size_t(nf), nullptr, size_t(nf), size_t(dim),
                       reinterpret_cast<uint16_t*>(decoded.get()), dim, s);
}

void CudaSparsePolicy::decode_attend(int layer, const Tensor& position, const Tensor& q,
                                     const Tensor& k, const Tensor& v, const Tensor& out) {
  Layer& L = layers_[size_t(layer)];
  const int64_t n = q.rows, T = prompt_, C = lay_.chunk, s_end = lay_.sink_end;
  const int64_t kk = lay_.selected_chunks, O = outliers_per_head(), S = slots();
  const bool quest = method_ == SparseMethod::Quest;
  // The assembled buffers: [sinks | S * C middle rows | tail], the tail being the exact rows from
  // `tail_src` on (local + generated; quest: every token from the local window on). Sizes are
  // those of a full cache, so every launch is the same at every position; the attention reads
  // the real length from shifted_index_.
  const int64_t n_exact = lay_.exact_prompt_tokens();
  const int64_t tail_src = quest ? lay_.local_start : s_end;
  const int64_t tail_rows = quest ? capacity_ - lay_.local_start : n_exact - s_end + capacity_ - T;
  const int64_t tail_dst = s_end + S * C;
  // 1. The new tokens join the exact store at row position + append_shift; the queries sit at
  // position + query_shift of the assembled buffers.
  const int64_t append_shift = quest ? 0 : n_exact - T;
  const int64_t query_shift = tail_dst - tail_src + append_shift;
  if (!inputs_recorded_) KVO_CUDA(cudaEventRecord(inputs_, stream_));
  inputs_recorded_ = false;
  KVO_CUDA(cudaStreamWaitEvent(work_, inputs_, 0));
  int32_t* shifted = static_cast<int32_t*>(shifted_index_.tensor().data);
  // The first layer of a step flips which set of the fetch caches the step fills.
  int32_t* flip = layer == 0 && lay_.fetch_cache ? cache_phase_.get() : nullptr;
  cuda::shift_index(static_cast<const int32_t*>(position.data), int32_t(append_shift),
                    int32_t(query_shift), shifted, flip, work_);
  cuda::copy_rows_at(static_cast<const bf16*>(k.data), k.stride, rows_of(L.keys),
                     L.keys.tensor().stride, n, W_, shifted, work_);
  cuda::copy_rows_at(static_cast<const bf16*>(v.data), v.stride, rows_of(L.values),
                     L.values.tensor().stride, n, W_, shifted, work_);
  // 2. Selection, then the records to fetch (shared by the key and value streams).
  select(L, q);
  const bool offloaded = !quest && kk > 0;
  if (offloaded) {
    if (lay_.store_spans_heads) {
      const int64_t mid = lay_.middle_tokens();
      KVO_CUDA(cudaMemsetAsync(flags_.get(), 0, size_t(flags_.nbytes()), work_));
      cuda::selected_records(slot_chunk_.get(), slot_src_.get(), H_, S, kk, int(C), nullptr,
                             flags_.get(), work_);
      cuda::exclusive_scan(flags_.get(), pos_.get(), mid, scan_ws_.get(), scan_ws_.size(), work_);
      cuda::compact_tokens(flags_.get(), pos_.get(), mid, list_.get(), listed_.get() + layer,
                           lay_.fetch_cache ? nullptr : fetched_total_.get() + layer, work_);
    } else {
      cuda::selected_records(slot_chunk_.get(), slot_src_.get(), H_, S, kk, int(C), list_.get(),
                             nullptr, work_);
    }
    if (lay_.fetch_cache) match_cached(L, layer);
  }
  KVO_CUDA(cudaEventRecord(selected_, work_));
  // 3. The attention buffers.
  auto selected_source = [&](const void* rows, bool f32, int64_t stride, bool keys) {
    cuda::SelectedSource src;
    src.rows = rows;
    src.f32 = f32;
    src.stride = stride;
    src.by_token = quest;
    src.row_of_token = !quest && lay_.store_spans_heads && !f32 ? pos_.get() : nullptr;
    src.per_head_columns = quest || (lay_.store_spans_heads && !f32);
    src.inv_freq = keys && !quest ? inv_freq_.get() : nullptr;
    src.adjacent_pairs = rope_.adjacent_pairs;
    return src;
  };
  // Values on the side stream (their PCIe fetch overlaps the keys' decode / rebuild).
  const cudaStream_t vs = offloaded ? side_ : work_;
  if (offloaded) KVO_CUDA(cudaStreamWaitEvent(side_, selected_, 0));
  copy_rows(rows_of(L.values), rows_of(attn_v_), s_end, W_, vs);
  copy_rows(rows_of(L.values, tail_src), rows_of(attn_v_, tail_dst), tail_rows, W_, vs);
  if (offloaded) fetch(L.store_v, L.scales_v, layer, L.cached_v, staging_v_, decoded_v_, vs);
  cuda::assemble_middle(slot_chunk_.get(), slot_src_.get(), H_, S, kk, O, int(C), D_, s_end,
                        rows_of(L.out_v),
                        quest ? selected_source(rows_of(L.values), false, W_, false)
                              : selected_source(decoded_v_.get(), false, record_dim(), false),
                        rows_of(attn_v_), vs);
  if (offloaded) KVO_CUDA(cudaEventRecord(values_ready_, side_));
  // Keys on the work stream.
  copy_rows(rows_of(L.keys), rows_of(attn_k_), s_end, W_, work_);
  copy_rows(rows_of(L.keys, tail_src), rows_of(attn_k_, tail_dst), tail_rows, W_, work_);
  cuda::SelectedSource key_src = selected_source(rows_of(L.keys), false, W_, true);
  if (offloaded && method_ == SparseMethod::YAKV) {
    fetch(L.store_k, L.scales_k, layer, L.cached_k, staging_k_, decoded_k_, work_);
    key_src = selected_source(decoded_k_.get(), false, record_dim(), true);
  } else if (offloaded) {
    // shadowkv: K_sel (H, k*C, D) = U_sel (H, k*C, r) x SV^T[:, h*D : (h+1)*D], fp32 out.
    const int64_t r = lay_.rank, rows = kk * C;
    check_cublas(cublasSetStream(cublas_, work_), "cublasSetStream");
    cuda::gather_selected_u(rows_of(L.u), r, slot_chunk_.get(), slot_src_.get(), H_, S, kk, int(C),
                            u_sel_.get(), work_);
    const float one = 1.0f, zero = 0.0f;
    check_cublas(
        cublasGemmStridedBatchedEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, D_, int(rows), int(r), &one,
                                   rows_of(L.vt), CUDA_R_16BF, int(W_), D_, u_sel_.get(),
                                   CUDA_R_16BF, int(r), rows * r, &zero, rebuilt_.get(), CUDA_R_32F,
                                   D_, rows * D_, H_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "K = U SV");
    key_src = selected_source(rebuilt_.get(), true, D_, true);
  }
  cuda::assemble_middle(slot_chunk_.get(), slot_src_.get(), H_, S, kk, O, int(C), D_, s_end,
                        rows_of(L.out_k), key_src, rows_of(attn_k_), work_);
  if (offloaded) KVO_CUDA(cudaStreamWaitEvent(work_, values_ready_, 0));
  // 4. Attention over the assembled keys, up to the queries' own, then the join.
  cuda::AttentionArgs a = attention_args(n);
  a.q = static_cast<const bf16*>(q.data);
  a.q_stride = q.stride;
  a.out = static_cast<bf16*>(out.data);
  a.out_stride = out.stride;
  a.q_start_at = shifted + 1;
  a.split_counters = attn_counters_.get();
  a.split_counter_slots = H_;
  const int64_t ws = cuda::attention_workspace_bytes(a, num_sms_);
  attn_ws_.reserve(size_t(ws));  // allocated for one token by allocate_decode_buffers
  cuda::attention(a, attn_ws_.get(), num_sms_, work_);
  KVO_CUDA(cudaEventRecord(done_, work_));
  KVO_CUDA(cudaStreamWaitEvent(stream_, done_, 0));
}

// Copies of the prefilled state (copy_from): device arrays on the backend's stream, host stores
// by every core (the source's are complete once its finish_prefill returned).
template <typename T>
DeviceBuffer<T> clone(const DeviceBuffer<T>& src, cudaStream_t s) {
  DeviceBuffer<T> c(src.size());
  if (src.size())
    KVO_CUDA(
        cudaMemcpyAsync(c.get(), src.get(), size_t(src.nbytes()), cudaMemcpyDeviceToDevice, s));
  return c;
}

void CudaSparsePolicy::copy_from(const KvPolicy& prefilled) {
  const auto* src = dynamic_cast<const CudaSparsePolicy*>(&prefilled);
  check(src && src->spec_.to_string() == spec_.to_string() && src->capacity_ == capacity_ &&
            src->finished_ && !finished_ && length_ == 0 && !diag_enabled_,
        "internal: a fresh '{}' cache of capacity {} cannot copy a '{}' cache of capacity {}",
        spec_.to_string(), capacity_, prefilled.name(), prefilled.capacity());
  auto clone_array = [&](const DeviceArray& a) {
    if (a.empty()) return DeviceArray();
    DeviceArray c = backend_.alloc(a.tensor().rows, a.tensor().cols);
    backend_.copy(a.tensor(), c.tensor());
    return c;
  };
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& from = src->layers_[l];
    Layer& to = layers_[l];
    to.keys = clone_array(from.keys);
    to.values = clone_array(from.values);
    to.out_k = clone_array(from.out_k);
    to.out_v = clone_array(from.out_v);
    to.lm = clone_array(from.lm);
    to.u = clone_array(from.u);
    to.vt = clone_array(from.vt);
    to.outliers = clone(from.outliers, stream_);
    to.cand = clone(from.cand, stream_);
    to.lm_q = clone(from.lm_q, stream_);
    to.scales_k = clone(from.scales_k, stream_);
    to.scales_v = clone(from.scales_v, stream_);
  }
  std::vector<const MappedHostBuffer*> stores;
  for (const Layer& from : src->layers_)
    stores.insert(stores.end(), {&from.store_k, &from.store_v});
  std::vector<MappedHostBuffer> copies = MappedHostBuffer::copies_of(stores);
  for (size_t l = 0; l < layers_.size(); ++l) {
    layers_[l].store_k = std::move(copies[2 * l]);
    layers_[l].store_v = std::move(copies[2 * l + 1]);
  }
  lay_ = src->lay_;
  prompt_ = src->prompt_;
  length_ = src->length_;
  allocate_decode_buffers();
  finished_ = true;
}

void CudaSparsePolicy::record_diagnostics(int layer, int64_t start, const Tensor& q_t,
                                          const Tensor& k_t, const Tensor& v_t,
                                          const Tensor& out_t) {
  Layer& L = layers_[size_t(layer)];
  const int64_t n = q_t.rows, C = lay_.chunk, S = slots();
  const std::vector<float> q = backend_.download(q_t), out = backend_.download(out_t);
  const std::vector<float> kn = backend_.download(k_t), vn = backend_.download(v_t);
  std::copy(kn.begin(), kn.end(), L.diag_k.begin() + start * W_);
  std::copy(vn.begin(), vn.end(), L.diag_v.begin() + start * W_);
  std::vector<int32_t> chunks(size_t(H_ * S));
  if (S > 0)
    KVO_CUDA(
        cudaMemcpy(chunks.data(), slot_chunk_.get(), chunks.size() * 4, cudaMemcpyDeviceToHost));
  if (layer == 0) diag_.clear();
  for (int h = 0; h < H_; ++h) {
    std::vector<int64_t> pos;
    for (int64_t t = 0; t < lay_.sink_end; ++t) pos.push_back(t);
    for (int64_t s = 0; s < S; ++s)
      for (int64_t c = 0; c < C; ++c)
        pos.push_back(lay_.sink_end + chunks[size_t(h * S + s)] * C + c);
    for (int64_t t = lay_.local_start; t < start + n; ++t) pos.push_back(t);
    HeadStep hs = head_step(layer, h, n, start, q.data(), out.data());
    hs.key = [&](int64_t p) { return &L.diag_k[size_t(p * W_ + h * D_)]; };
    hs.value = [&](int64_t p) { return &L.diag_v[size_t(p * W_ + h * D_)]; };
    diag_.push_back(diagnose_head(hs, std::move(pos)));
  }
}

KvMemoryReport CudaSparsePolicy::memory() const {
  KvMemoryReport r;
  r.tokens = length_;
  if (!finished_) {
    for (const auto* arrays : {&st_k_, &st_v_, &st_kpre_})
      for (const auto& a : *arrays) r.gpu_bytes += a.nbytes();
    return r;
  }
  for (const Layer& L : layers_) {
    for (const DeviceArray* a : {&L.keys, &L.values, &L.out_k, &L.out_v, &L.lm, &L.u, &L.vt})
      r.gpu_bytes += int64_t(a->nbytes());
    r.gpu_bytes += L.outliers.nbytes() + L.cand.nbytes() + L.lm_q.nbytes() + L.scales_k.nbytes() +
                   L.scales_v.nbytes() + L.cached_list.nbytes() + L.cached_k.nbytes() +
                   L.cached_v.nbytes();
    r.cpu_bytes += L.store_k.nbytes() + L.store_v.nbytes();
  }
  r.gpu_bytes +=
      int64_t(attn_k_.nbytes() + attn_v_.nbytes()) + attn_ws_.nbytes() + attn_counters_.nbytes() +
      cublas_ws_.nbytes() + logits_.nbytes() + stats_.nbytes() + agg_.nbytes() +
      selected_idx_.nbytes() + slot_chunk_.nbytes() + slot_src_.nbytes() + flags_.nbytes() +
      pos_.nbytes() + list_.nbytes() + listed_.nbytes() + fetched_total_.nbytes() + hit_.nbytes() +
      cache_phase_.nbytes() + cached_count_.nbytes() + scan_ws_.nbytes() + staging_k_.nbytes() +
      staging_v_.nbytes() + decoded_k_.nbytes() + decoded_v_.nbytes() + lm_decoded_.nbytes() +
      meta_logits_.nbytes() + u_sel_.nbytes() + rebuilt_.nbytes();
  // PCIe: the records fetched per decode step, mean over the steps (before any: the layout's
  // bound, which per-head lists without the cache always fetch: nothing to count).
  r.pcie_bytes_per_step = method_ == SparseMethod::Quest ? 0 : lay_.pcie_bytes_per_step;
  if (decode_steps_ == 0 || method_ == SparseMethod::Quest ||
      (!lay_.fetch_cache && !lay_.store_spans_heads))
    return r;
  std::vector<unsigned long long> totals(size_t(cfg_.num_layers));
  KVO_CUDA(cudaStreamSynchronize(stream_));
  KVO_CUDA(cudaMemcpy(totals.data(), fetched_total_.get(), fetched_total_.nbytes(),
                      cudaMemcpyDeviceToHost));
  int64_t records = 0;
  for (unsigned long long t : totals) records += int64_t(t);
  const int64_t tensors = method_ == SparseMethod::YAKV ? 2 : 1;
  r.pcie_bytes_per_step = records * lay_.store_host_bytes() * tensors / decode_steps_;
  return r;
}

}  // namespace

bool cuda_sparse_supported(const KvSpec& spec, const ModelConfig& config) {
  if (spec.method == "quest") return true;
  const int64_t D = config.head_dim;
  if (!qc::device_supported(*make_store_quantizer(spec.kv_store, head_group(D)))) return false;
  return spec.method != "yakv" ||
         qc::device_supported(*make_store_quantizer(spec.landmarks, head_group(D)));
}

std::unique_ptr<KvPolicy> make_cuda_sparse_policy(Backend& backend, const ModelConfig& config,
                                                  const KvSpec& spec, int64_t capacity) {
  return std::make_unique<CudaSparsePolicy>(backend, config, spec, capacity);
}

}  // namespace kvo
#endif  // KVO_HAVE_CUDA
