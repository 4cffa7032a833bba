// The CUDA sparse policies after the prompt (cuda_sparse_policy_impl.h): finish_prefill builds
// each layer's device and host regions from the prefill's exact K/V, then the decode buffers.
#ifdef KVO_HAVE_CUDA
#include <numeric>

#include "kv/cuda/cuda_sparse_policy_impl.h"
#include "kv/kv_store.h"
#include "quant/higgs.h"

namespace kvo::cuda_sparse {

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

}  // namespace kvo::cuda_sparse
#endif  // KVO_HAVE_CUDA
