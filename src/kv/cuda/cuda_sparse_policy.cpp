// The CUDA sparse policies (cuda_sparse_policy_impl.h): copies of a prefilled policy, the memory
// report, diagnostics, and the factory of cuda_sparse_policy.h.
#ifdef KVO_HAVE_CUDA
#include "kv/cuda/cuda_sparse_policy.h"

#include "kv/cuda/cuda_sparse_policy_impl.h"
#include "kv/head_diagnostics.h"
#include "kv/kv_store.h"

namespace kvo {
namespace cuda_sparse {
namespace {

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

}  // namespace

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

}  // namespace cuda_sparse

bool cuda_sparse_supported(const KvSpec& spec, const ModelConfig& config) {
  if (spec.method == "quest") return true;
  const int64_t D = config.head_dim;
  if (!quant::cuda::device_supported(*make_store_quantizer(spec.kv_store, head_group(D))))
    return false;
  return spec.method != "yakv" ||
         quant::cuda::device_supported(*make_store_quantizer(spec.landmarks, head_group(D)));
}

std::unique_ptr<KvPolicy> make_cuda_sparse_policy(Backend& backend, const ModelConfig& config,
                                                  const KvSpec& spec, int64_t capacity) {
  return std::make_unique<cuda_sparse::CudaSparsePolicy>(backend, config, spec, capacity);
}

}  // namespace kvo
#endif  // KVO_HAVE_CUDA
