// A decode step of the CUDA sparse policies (cuda_sparse_policy_impl.h): selection, the fetch
// cache, the gathers over PCIe and the attention over the assembled keys and values.
#ifdef KVO_HAVE_CUDA
#include "backend/cuda/kernels.h"
#include "kv/cuda/cuda_sparse_policy_impl.h"
#include "quant/higgs.h"

namespace kvo::cuda_sparse {

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

}  // namespace kvo::cuda_sparse
#endif  // KVO_HAVE_CUDA
