// The sparse KV policies (shadowkv, yakv, quest): the CPU reference of their algorithms, data
// layouts and byte accounting (kv_layout.h), shared by one class because they differ only in
// how landmarks are built and scored and where the keys/values of selected chunks come from.
//
// Life of a sequence:
//   prefill   every attend() before finish_prefill() is exact: K/V (and pre-RoPE keys for
//             shadowkv/yakv) go to backend staging arrays of `capacity` rows and the backend's
//             dense attention runs over them, exactly like `dense` (the transient peak of a
//             prefill is therefore dense-sized; memory() reports the staging until then).
//   finish    per layer: sinks/local copied exact; middle chunks get landmarks (mean of
//             post-RoPE keys), outlier chunks (lowest min-cosine to their mean) are kept exact;
//             shadowkv factorizes the pre-RoPE keys (low_rank.h) and offloads values; yakv
//             quantizes landmarks and offloads pre-RoPE keys and values with --kv-store; quest
//             keeps every K/V and stores per-page min/max bounds. Staging is freed.
//   decode    every attend() after finish_prefill(): the new tokens join the exact generated
//             store; per KV head, the query heads of its group score the landmarks
//             (selection.h), the top-k chunks are gathered (shadowkv: keys rebuilt from U*SV^T,
//             yakv: keys/values decoded from the host store; both re-RoPE'd at their position;
//             quest: from its exact cache) into the gather buffer, and attention runs over
//             [sinks + outliers + local + selected + generated] in position order.
// Host-side storage stands for both pools; memory() counts exact device tensors at the
// backend's bytes per value (4 on the CPU, 2 on CUDA) and encoded stores at their bytes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#ifdef KVO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "kv/cuda/cuda_sparse_policy.h"
#endif
#include "kv/head_diagnostics.h"
#include "kv/kv_layout.h"
#include "kv/kv_policy.h"
#include "kv/kv_store.h"
#include "kv/low_rank.h"
#include "kv/selection.h"
#include "kv/sparse_setup.h"
#include "model/rope.h"
#include "quant/higgs.h"
#include "util/error.h"

namespace kvo {
namespace {

class SparsePolicy final : public KvPolicy, public KvDiagnosable, private SparseSetup {
 public:
  SparsePolicy(Backend& backend, const ModelConfig& config, const KvSpec& spec, int64_t capacity)
      : SparseSetup(config, spec),
        backend_(backend),
        cfg_(config),
        spec_(spec),
        capacity_(capacity),
        rope_(make_rope_params(config)) {
    {
      DeviceArray probe = backend.alloc(1, 1);
      dev_bytes_ = int(dtype_size(probe.tensor().dtype));
    }
    for (int l = 0; l < config.num_layers; ++l) {
      st_k_.push_back(backend.alloc(capacity, W_));
      st_v_.push_back(backend.alloc(capacity, W_));
      if (method_ != SparseMethod::Quest) st_kpre_.push_back(backend.alloc(capacity, W_));
    }
    layers_.resize(size_t(config.num_layers));
  }

  std::string name() const override { return spec_.method; }
  bool wants_pre_rope_keys() const override { return method_ != SparseMethod::Quest; }
  int64_t length() const override { return length_; }
  int64_t capacity() const override { return capacity_; }

  void enable_diagnostics() override { diag_enabled_ = true; }
  const std::vector<KvHeadDiagnostics>& diagnostics() const override { return diag_; }
  std::string layout_summary() const override {
    return finished_ ? describe(spec_, layout_, prompt_) : "";
  }

  void attend(int layer, int64_t start, const Tensor& q, const Tensor& k_pre, const Tensor& k,
              const Tensor& v, const Tensor& out) override {
    const int64_t n = q.rows;
    check(start + n <= capacity_, "the sequence needs {} tokens but the KV cache holds {}",
          start + n, capacity_);
    if (!finished_) {
      prefill_attend(layer, start, q, k_pre, k, v, out);
    } else {
      decode_attend(layer, start, q, k, v, out);
    }
    if (layer == cfg_.num_layers - 1) length_ = start + n;
  }

  void finish_prefill() override;

  void copy_from(const KvPolicy& prefilled) override {
    const auto* src = dynamic_cast<const SparsePolicy*>(&prefilled);
    check(src && src->spec_.to_string() == spec_.to_string() && src->capacity_ == capacity_ &&
              src->finished_ && length_ == 0 && !diag_enabled_,
          "internal: a fresh '{}' cache of capacity {} cannot copy a '{}' cache of capacity {}",
          spec_.to_string(), capacity_, prefilled.name(), prefilled.capacity());
    st_k_.clear();
    st_v_.clear();
    st_kpre_.clear();
    layers_ = src->layers_;
    for (Layer& L : layers_) {  // a fresh fetch cache and count, as on CUDA
      L.fetched_ids.clear();
      L.fetched_total = 0;
    }
    gather_k_ = src->gather_k_;
    gather_v_ = src->gather_v_;
    layout_ = src->layout_;
    store_rec_ = src->store_rec_;
    length_ = src->length_;
    prompt_ = src->prompt_;
    finished_ = true;
  }

  KvMemoryReport memory() const override {
    KvMemoryReport r;
    r.tokens = length_;
    if (!finished_) {
      for (size_t l = 0; l < st_k_.size(); ++l)
        r.gpu_bytes += st_k_[l].nbytes() + st_v_[l].nbytes();
      for (const auto& a : st_kpre_) r.gpu_bytes += a.nbytes();
      return r;
    }
    const int64_t b = dev_bytes_;
    auto f = [&](const std::vector<float>& x) { return int64_t(x.size()) * b; };
    for (const Layer& L : layers_) {
      r.gpu_bytes += f(L.exact_k) + f(L.exact_v) + f(L.gen_k) + f(L.gen_v) + f(L.out_k) +
                     f(L.out_v) + f(L.u) + f(L.vt) + f(L.lm) + int64_t(L.lm_q.size()) +
                     f(L.bounds) + f(L.all_k) + f(L.all_v);
      // Of each record, the scale bytes count on the device (kv_layout.h), the rest on the host.
      const int64_t records =
          int64_t(L.store_k.size() + L.store_v.size()) / std::max<int64_t>(store_rec_, 1);
      r.cpu_bytes += records * layout_.store_host_bytes();
      r.gpu_bytes += records * layout_.store_scale_bytes;
    }
    r.gpu_bytes += f(gather_k_) + f(gather_v_) + layout_.item("fetch cache");
    // PCIe: the records fetched per decode step, mean over the steps (before any: the bound).
    r.pcie_bytes_per_step = layout_.pcie_bytes_per_step;
    if (decode_steps_ > 0) {
      const int64_t tensors = method_ == SparseMethod::YAKV ? 2 : 1;
      int64_t records = 0;
      for (const Layer& L : layers_) records += L.fetched_total;
      r.pcie_bytes_per_step = records * layout_.store_host_bytes() * tensors / decode_steps_;
    }
    return r;
  }

 private:
  struct Layer {
    std::vector<float> exact_k, exact_v;    // (sink tokens + local tokens) x W, post-RoPE
    std::vector<float> gen_k, gen_v;        // (capacity - T) x W
    std::vector<float> out_k, out_v;        // H x O x C x D
    std::vector<int64_t> outlier_chunks;    // H x O, ascending per head
    std::vector<int64_t> cand_chunks;       // H x (M - O), ascending per head
    std::vector<float> lm;                  // shadowkv: H x (M - O) x D
    std::vector<uint8_t> lm_q;              // yakv: H blocks of encoded landmarks
    std::vector<float> u, vt;               // shadowkv: middle tokens x r, r x W
    std::vector<float> bounds;              // quest: (M - O) pages x [min W | max W]
    std::vector<float> all_k, all_v;        // quest: capacity x W
    std::vector<uint8_t> store_k, store_v;  // host: middle tokens' records
    std::vector<float> diag_k, diag_v;      // diagnostics only: exact prompt K/V (T x W)
    // The records the latest step fetched, ascending (ids as the CUDA policy lists them: per
    // (token, head) tm * H + h, spanning records tm), and how many crossed PCIe over all steps:
    // every listed record, or with the fetch cache those the step before had not fetched. The
    // CPU reference keeps only the ids; memory() counts the cache's device bytes as the layout
    // sizes them.
    std::vector<int32_t> fetched_ids;
    int64_t fetched_total = 0;
  };

  void prefill_attend(int layer, int64_t start, const Tensor& q, const Tensor& k_pre,
                      const Tensor& k, const Tensor& v, const Tensor& out) {
    const int64_t n = q.rows;
    Tensor keys = st_k_[layer].tensor(), values = st_v_[layer].tensor();
    backend_.copy(k, keys.row_range(start, n));
    backend_.copy(v, values.row_range(start, n));
    if (!st_kpre_.empty()) backend_.copy(k_pre, st_kpre_[layer].tensor().row_range(start, n));
    AttentionShape shape{cfg_.num_heads,
                         cfg_.num_kv_heads,
                         cfg_.head_dim,
                         n,
                         start,
                         start + n,
                         1.0f / std::sqrt(float(cfg_.head_dim))};
    backend_.attention(q, keys.row_range(0, start + n), values.row_range(0, start + n), shape, out);
  }

  void rope_row(float* x, int64_t pos) const {
    const int half = D_ / 2;
    for (int i = 0; i < half; ++i) {
      const float angle = float(pos) * rope_.inv_freq[i];
      const float c = std::cos(angle), s = std::sin(angle);
      const int a = rope_.adjacent_pairs ? 2 * i : i;
      const int b = rope_.adjacent_pairs ? 2 * i + 1 : i + half;
      const float x0 = x[a], x1 = x[b];
      x[a] = x0 * c - x1 * s;
      x[b] = x1 * c + x0 * s;
    }
  }

  // Token index of chunk j of the middle region.
  int64_t chunk_first(int64_t j) const { return layout_.sink_end + j * layout_.chunk; }

  void build_layer(int l, const std::vector<float>& K, const std::vector<float>& Kpre,
                   const std::vector<float>& V);
  void decode_attend(int layer, int64_t start, const Tensor& q, const Tensor& k, const Tensor& v,
                     const Tensor& out);
  // The step's records (a list per head; a spanning record once for all heads) -> fetched_ids,
  // the count of those that crossed PCIe added to fetched_total.
  void count_fetched_records(Layer& L, const std::vector<std::vector<int32_t>>& head_records);
  // Candidate scores of KV head h for the queries of its group: logits [G][n][m].
  void landmark_logits(const Layer& L, int h, const float* q, int64_t n, float* logits) const;

  Backend& backend_;
  ModelConfig cfg_;
  KvSpec spec_;
  int64_t capacity_;
  RopeParams rope_;
  int dev_bytes_ = 4;
  std::vector<DeviceArray> st_k_, st_v_, st_kpre_;
  std::vector<Layer> layers_;
  std::vector<float> gather_k_, gather_v_;  // 2 x (k * C) x W, double-buffered by layer parity
  KvLayout layout_;
  bool finished_ = false;
  int64_t length_ = 0, prompt_ = 0;
  int64_t store_rec_ = 0;  // bytes per record (per (token, head) or per token)
  bool diag_enabled_ = false;
  int64_t decode_steps_ = 0;  // since the prefill
  std::vector<KvHeadDiagnostics> diag_;
};

void SparsePolicy::finish_prefill() {
  if (finished_) return;
  prompt_ = length_;
  layout_ = plan_kv_layout(spec_, cfg_, prompt_, capacity_, dev_bytes_);
  store_rec_ = layout_.store_record_bytes;
  const int64_t T = prompt_;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const Tensor kt = st_k_[l].tensor().row_range(0, T), vt = st_v_[l].tensor().row_range(0, T);
    std::vector<float> K = T ? backend_.download(kt) : std::vector<float>();
    std::vector<float> V = T ? backend_.download(vt) : std::vector<float>();
    std::vector<float> Kpre;
    if (!st_kpre_.empty() && T) Kpre = backend_.download(st_kpre_[l].tensor().row_range(0, T));
    st_k_[l] = DeviceArray();
    st_v_[l] = DeviceArray();
    if (!st_kpre_.empty()) st_kpre_[l] = DeviceArray();
    build_layer(l, K, Kpre, V);
  }
  st_k_.clear();
  st_v_.clear();
  st_kpre_.clear();
  if (method_ != SparseMethod::Quest) {
    const size_t g = size_t(2 * layout_.selected_chunks * layout_.chunk * W_);
    gather_k_.assign(g, 0.0f);
    gather_v_.assign(g, 0.0f);
  }
  finished_ = true;
}

void SparsePolicy::build_layer(int l, const std::vector<float>& K, const std::vector<float>& Kpre,
                               const std::vector<float>& V) {
  Layer& L = layers_[size_t(l)];
  const int64_t T = prompt_, C = layout_.chunk, M = layout_.middle_chunks;
  const int64_t O = layout_.outlier_chunks, m = layout_.landmark_chunks;
  const int64_t s_end = layout_.sink_end, l_start = layout_.local_start;
  const int64_t mid = layout_.middle_tokens();
  if (diag_enabled_) {
    L.diag_k = K;
    L.diag_v = V;
  }
  const int64_t gen = capacity_ - T;
  if (method_ == SparseMethod::Quest) {
    L.all_k.assign(size_t(capacity_ * W_), 0.0f);
    L.all_v.assign(size_t(capacity_ * W_), 0.0f);
    std::copy(K.begin(), K.end(), L.all_k.begin());
    std::copy(V.begin(), V.end(), L.all_v.begin());
    L.bounds.resize(size_t(m * 2 * W_));
    for (int64_t j = 0; j < m; ++j) {
      float* mn = &L.bounds[size_t(j * 2 * W_)];
      float* mx = mn + W_;
      for (int64_t c = 0; c < W_; ++c) mn[c] = INFINITY, mx[c] = -INFINITY;
      for (int64_t t = chunk_first(j); t < chunk_first(j) + C; ++t)
        for (int64_t c = 0; c < W_; ++c) {
          mn[c] = std::min(mn[c], K[t * W_ + c]);
          mx[c] = std::max(mx[c], K[t * W_ + c]);
        }
    }
    L.cand_chunks.resize(size_t(H_ * m));
    for (int h = 0; h < H_; ++h)
      std::iota(L.cand_chunks.begin() + h * m, L.cand_chunks.begin() + (h + 1) * m, int64_t{0});
    return;
  }
  // Exact regions: sinks then local, rows of W.
  const int64_t n_exact = layout_.exact_prompt_tokens();
  L.exact_k.resize(size_t(n_exact * W_));
  L.exact_v.resize(size_t(n_exact * W_));
  std::copy(K.begin(), K.begin() + s_end * W_, L.exact_k.begin());
  std::copy(V.begin(), V.begin() + s_end * W_, L.exact_v.begin());
  std::copy(K.begin() + l_start * W_, K.begin() + T * W_, L.exact_k.begin() + s_end * W_);
  std::copy(V.begin() + l_start * W_, V.begin() + T * W_, L.exact_v.begin() + s_end * W_);
  L.gen_k.assign(size_t(gen * W_), 0.0f);
  L.gen_v.assign(size_t(gen * W_), 0.0f);

  // Landmarks (means of post-RoPE keys) and outlier scores per head and middle chunk.
  std::vector<float> means(static_cast<size_t>(H_ * M * D_));
  std::vector<float> min_cos(static_cast<size_t>(H_ * M));
  for (int h = 0; h < H_; ++h) {
    for (int64_t j = 0; j < M; ++j) {
      float* mean = &means[size_t((h * M + j) * D_)];
      for (int d = 0; d < D_; ++d) {
        double s = 0;
        for (int64_t t = chunk_first(j); t < chunk_first(j) + C; ++t) s += K[t * W_ + h * D_ + d];
        mean[d] = float(s / double(C));
      }
      if (O == 0) continue;
      double mn = 0;
      for (int d = 0; d < D_; ++d) mn += double(mean[d]) * mean[d];
      double worst = INFINITY;
      for (int64_t t = chunk_first(j); t < chunk_first(j) + C; ++t) {
        const float* kr = &K[t * W_ + h * D_];
        double dot = 0, kn = 0;
        for (int d = 0; d < D_; ++d) dot += double(kr[d]) * mean[d], kn += double(kr[d]) * kr[d];
        const double denom = std::sqrt(mn * kn);
        worst = std::min(worst, denom > 0 ? dot / denom : 1.0);
      }
      min_cos[size_t(h * M + j)] = float(worst);
    }
  }
  L.outlier_chunks.resize(size_t(H_ * O));
  L.cand_chunks.resize(size_t(H_ * m));
  L.out_k.resize(size_t(H_ * O * C * D_));
  L.out_v.resize(size_t(H_ * O * C * D_));
  for (int h = 0; h < H_; ++h) {
    std::vector<int64_t> order(static_cast<size_t>(M));
    std::iota(order.begin(), order.end(), int64_t{0});
    const float* mc = &min_cos[size_t(h * M)];
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return mc[a] < mc[b]; });
    std::vector<int64_t> outl(order.begin(), order.begin() + O);
    std::sort(outl.begin(), outl.end());
    std::vector<char> is_out(static_cast<size_t>(M), 0);
    for (int64_t i = 0; i < O; ++i) {
      const int64_t j = outl[size_t(i)];
      is_out[size_t(j)] = 1;
      L.outlier_chunks[size_t(h * O + i)] = j;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t t = chunk_first(j) + c;
        std::memcpy(&L.out_k[size_t(((h * O + i) * C + c) * D_)], &K[t * W_ + h * D_], D_ * 4);
        std::memcpy(&L.out_v[size_t(((h * O + i) * C + c) * D_)], &V[t * W_ + h * D_], D_ * 4);
      }
    }
    int64_t i = 0;
    for (int64_t j = 0; j < M; ++j)
      if (!is_out[size_t(j)]) L.cand_chunks[size_t(h * m + i++)] = j;
  }
  // Landmarks of the candidates, head by head.
  std::vector<float> lm(static_cast<size_t>(H_ * m * D_));
  for (int h = 0; h < H_; ++h)
    for (int64_t i = 0; i < m; ++i) {
      const int64_t j = L.cand_chunks[size_t(h * m + i)];
      std::memcpy(&lm[size_t((h * m + i) * D_)], &means[size_t((h * M + j) * D_)], D_ * 4);
    }
  if (method_ == SparseMethod::ShadowKV) {
    L.lm = std::move(lm);
  } else {
    const size_t per_head = landmark_q_->encoded_bytes(size_t(m), size_t(D_));
    L.lm_q.resize(per_head * H_);
    for (int h = 0; h < H_; ++h)
      if (m)
        landmark_q_->encode_into(&lm[size_t(h * m * D_)], size_t(m), size_t(D_),
                                 &L.lm_q[h * per_head]);
  }
  // The host store of the middle tokens.
  auto encode_middle = [&](const std::vector<float>& X, std::vector<uint8_t>& dst) {
    if (mid == 0) return;
    const float* x = &X[size_t(s_end * W_)];
    if (layout_.store_spans_heads) {
      dst.resize(size_t(mid * store_rec_));
      store_->encode_into(x, size_t(mid), size_t(W_), dst.data());
    } else {
      dst.resize(size_t(mid * H_ * store_rec_));
      store_->encode_into(x, size_t(mid * H_), size_t(D_), dst.data());
    }
  };
  encode_middle(V, L.store_v);
  if (method_ == SparseMethod::YAKV) encode_middle(Kpre, L.store_k);
  if (method_ == SparseMethod::ShadowKV && mid > 0) {
    const int64_t r = layout_.rank;
    LowRank lr = low_rank_factorize(Kpre.data(), T, W_, r);
    L.u.assign(lr.u.begin() + s_end * r, lr.u.begin() + (s_end + mid) * r);
    L.vt = std::move(lr.vt);
  }
}

void SparsePolicy::landmark_logits(const Layer& L, int h, const float* q, int64_t n,
                                   float* logits) const {
  const int64_t m = layout_.landmark_chunks;
  const float sc = scale();
  const int64_t qs = int64_t(Hq_) * D_;
  auto qrow = [&](int g, int64_t t) { return q + t * qs + int64_t(h * G_ + g) * D_; };
  if (method_ == SparseMethod::Quest) {
    for (int g = 0; g < G_; ++g)
      for (int64_t t = 0; t < n; ++t) {
        const float* qr = qrow(g, t);
        float* out = logits + (int64_t(g) * n + t) * m;
        for (int64_t j = 0; j < m; ++j) {
          const float* mn = &L.bounds[size_t(j * 2 * W_ + h * D_)];
          const float* mx = mn + W_;
          float s = 0;
          for (int d = 0; d < D_; ++d) s += std::max(qr[d] * mn[d], qr[d] * mx[d]);
          out[j] = s * sc;
        }
      }
    return;
  }
  const float* lm = nullptr;
  std::vector<float> decoded;
  const auto* higgs = method_ == SparseMethod::YAKV
                          ? dynamic_cast<const quant::HiggsQuantizer*>(landmark_q_.get())
                          : nullptr;
  const size_t per_head =
      method_ == SparseMethod::YAKV ? landmark_q_->encoded_bytes(size_t(m), size_t(D_)) : 0;
  if (method_ == SparseMethod::ShadowKV) {
    lm = &L.lm[size_t(h * m * D_)];
  } else if (!higgs) {
    decoded.resize(size_t(m * D_));
    landmark_q_->decode(&L.lm_q[h * per_head], size_t(m), size_t(D_), decoded.data());
    lm = decoded.data();
  }
  for (int g = 0; g < G_; ++g)
    for (int64_t t = 0; t < n; ++t) {
      const float* qr = qrow(g, t);
      float* out = logits + (int64_t(g) * n + t) * m;
      if (higgs) {
        // Rotated-domain scoring: the landmarks are never dequantized.
        const std::vector<float> q_rot = higgs->rotate_query(qr, size_t(D_));
        higgs->score(q_rot.data(), &L.lm_q[h * per_head], size_t(m), size_t(D_), out);
        for (int64_t j = 0; j < m; ++j) out[j] *= sc;
      } else {
        for (int64_t j = 0; j < m; ++j) {
          const float* lr = lm + j * D_;
          float s = 0;
          for (int d = 0; d < D_; ++d) s += qr[d] * lr[d];
          out[j] = s * sc;
        }
      }
    }
}

void SparsePolicy::count_fetched_records(Layer& L,
                                         const std::vector<std::vector<int32_t>>& head_records) {
  std::vector<int32_t> ids;
  for (const auto& r : head_records) ids.insert(ids.end(), r.begin(), r.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  int64_t fetched = int64_t(ids.size());
  if (layout_.fetch_cache) {
    std::vector<int32_t> fresh;
    std::set_difference(ids.begin(), ids.end(), L.fetched_ids.begin(), L.fetched_ids.end(),
                        std::back_inserter(fresh));
    fetched = int64_t(fresh.size());
  }
  L.fetched_total += fetched;
  L.fetched_ids = std::move(ids);
}

void SparsePolicy::decode_attend(int layer, int64_t start, const Tensor& q_t, const Tensor& k_t,
                                 const Tensor& v_t, const Tensor& out_t) {
  Layer& L = layers_[size_t(layer)];
  const int64_t n = q_t.rows, T = prompt_, C = layout_.chunk;
  const int64_t m = layout_.landmark_chunks, O = layout_.outlier_chunks;
  const int64_t k_sel = layout_.selected_chunks;
  check(start >= T, "internal: a prompt token after finish_prefill");
  const std::vector<float> q = backend_.download(q_t);
  const std::vector<float> kn = backend_.download(k_t), vn = backend_.download(v_t);
  // New tokens join the exact generated store (quest: its full cache).
  std::vector<float>& gk = method_ == SparseMethod::Quest ? L.all_k : L.gen_k;
  std::vector<float>& gv = method_ == SparseMethod::Quest ? L.all_v : L.gen_v;
  const int64_t g0 = method_ == SparseMethod::Quest ? start : start - T;
  std::copy(kn.begin(), kn.end(), gk.begin() + g0 * W_);
  std::copy(vn.begin(), vn.end(), gv.begin() + g0 * W_);
  const int64_t gen_len = start + n - T;
  const int64_t qs = int64_t(Hq_) * D_;
  std::vector<float> out(static_cast<size_t>(n * qs));
  std::vector<KvHeadDiagnostics> diag(static_cast<size_t>(diag_enabled_ ? H_ : 0));
  float* gather_k = gather_k_.empty() ? nullptr : &gather_k_[size_t((layer % 2) * k_sel * C * W_)];
  float* gather_v = gather_v_.empty() ? nullptr : &gather_v_[size_t((layer % 2) * k_sel * C * W_)];
  std::vector<std::vector<int32_t>> head_records(static_cast<size_t>(H_));  // each head's fetches

#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < H_; ++h) {
    // 1. Selection.
    std::vector<int64_t> chosen;  // landmark indices (ascending)
    if (k_sel < m) {
      std::vector<float> logits(static_cast<size_t>(G_ * n * m));
      landmark_logits(L, h, q.data(), n, logits.data());
      chosen =
          top_k_indices(aggregate_landmark_scores(logits.data(), G_, n, m, spec_.agg()), k_sel);
    } else {
      chosen.resize(size_t(m));
      std::iota(chosen.begin(), chosen.end(), int64_t{0});
    }
    // Middle chunks attended: outliers and selected, in position order.
    std::vector<std::pair<int64_t, int64_t>> mids;  // (chunk, outlier slot or -1 - selected slot)
    for (int64_t i = 0; i < O; ++i) mids.push_back({L.outlier_chunks[size_t(h * O + i)], i});
    for (size_t i = 0; i < chosen.size(); ++i)
      mids.push_back({L.cand_chunks[size_t(h * m + chosen[i])], -1 - int64_t(i)});
    std::sort(mids.begin(), mids.end());
    // 2. Keys/values of the attended prompt tokens (position order), then generated.
    const int64_t n_prompt = layout_.exact_prompt_tokens() + int64_t(mids.size()) * C;
    const int64_t n_keys = n_prompt + gen_len;
    std::vector<float> K(static_cast<size_t>(n_keys * D_)), V(size_t(n_keys * D_));
    std::vector<int64_t> pos(static_cast<size_t>(n_keys));
    std::vector<float> tmp(static_cast<size_t>(layout_.store_spans_heads ? W_ : D_));
    int64_t row = 0;
    auto put = [&](const float* kr, const float* vr, int64_t p) {
      std::memcpy(&K[size_t(row * D_)], kr, D_ * 4);
      std::memcpy(&V[size_t(row * D_)], vr, D_ * 4);
      pos[size_t(row++)] = p;
    };
    const std::vector<float>& ek = method_ == SparseMethod::Quest ? L.all_k : L.exact_k;
    const std::vector<float>& ev = method_ == SparseMethod::Quest ? L.all_v : L.exact_v;
    for (int64_t t = 0; t < layout_.sink_end; ++t)
      put(&ek[t * W_ + h * D_], &ev[t * W_ + h * D_], t);
    for (const auto& [j, slot] : mids) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t t = chunk_first(j) + c, tm = t - layout_.sink_end;
        if (slot >= 0) {  // outlier: exact on the device
          const size_t at = size_t(((h * O + slot) * C + c) * D_);
          put(&L.out_k[at], &L.out_v[at], t);
          continue;
        }
        if (method_ == SparseMethod::Quest) {  // every K/V is exact on the device
          put(&L.all_k[t * W_ + h * D_], &L.all_v[t * W_ + h * D_], t);
          continue;
        }
        const int64_t gi = (-1 - slot) * C + c;  // row in the gather buffer
        float* gkr = gather_k + gi * W_ + h * D_;
        float* gvr = gather_v + gi * W_ + h * D_;
        auto fetch = [&](const std::vector<uint8_t>& store, float* dst) {
          if (layout_.store_spans_heads) {
            store_->decode(&store[size_t(tm * store_rec_)], 1, size_t(W_), tmp.data());
            std::memcpy(dst, &tmp[size_t(h * D_)], D_ * 4);
          } else {
            store_->decode(&store[size_t((tm * H_ + h) * store_rec_)], 1, size_t(D_), dst);
          }
        };
        head_records[size_t(h)].push_back(int32_t(layout_.store_spans_heads ? tm : tm * H_ + h));
        fetch(L.store_v, gvr);
        if (method_ == SparseMethod::YAKV) {
          fetch(L.store_k, gkr);
        } else {  // shadowkv: rebuild the pre-RoPE key from U * SV^T
          const int64_t r = layout_.rank;
          const float* ur = &L.u[size_t(tm * r)];
          for (int d = 0; d < D_; ++d) {
            float s = 0;
            for (int64_t i = 0; i < r; ++i) s += ur[i] * L.vt[size_t(i * W_ + h * D_ + d)];
            gkr[d] = s;
          }
        }
        rope_row(gkr, t);
        put(gkr, gvr, t);
      }
    }
    for (int64_t t = layout_.local_start; t < T; ++t) {
      const int64_t e =
          method_ == SparseMethod::Quest ? t : layout_.sink_end + (t - layout_.local_start);
      put(&ek[e * W_ + h * D_], &ev[e * W_ + h * D_], t);
    }
    for (int64_t i = 0; i < gen_len; ++i) {
      const int64_t e = method_ == SparseMethod::Quest ? T + i : i;
      put(&gk[e * W_ + h * D_], &gv[e * W_ + h * D_], T + i);
    }
    // 3. Attention of the group's query heads over those keys (causal among generated ones).
    Tensor qv{const_cast<float*>(q.data()) + int64_t(h) * G_ * D_, DType::F32, n, int64_t(G_) * D_,
              qs};
    Tensor ov{out.data() + int64_t(h) * G_ * D_, DType::F32, n, int64_t(G_) * D_, qs};
    Tensor kv{K.data(), DType::F32, n_keys, D_, D_}, vv{V.data(), DType::F32, n_keys, D_, D_};
    AttentionShape shape{G_, 1, D_, n, n_prompt + (start - T), n_keys, scale()};
    cpu_attention(qv, kv, vv, shape, ov);
    // 4. Diagnostics: exact attention over every token with the same queries.
    if (diag_enabled_) {
      HeadStep hs = head_step(layer, h, n, start, q.data(), out.data());
      const int64_t gen0 = method_ == SparseMethod::Quest ? 0 : T;
      hs.key = [&](int64_t p) {
        return p < T ? &L.diag_k[size_t(p * W_ + h * D_)] : &gk[size_t((p - gen0) * W_ + h * D_)];
      };
      hs.value = [&](int64_t p) {
        return p < T ? &L.diag_v[size_t(p * W_ + h * D_)] : &gv[size_t((p - gen0) * W_ + h * D_)];
      };
      diag[size_t(h)] = diagnose_head(hs, std::move(pos));
    }
  }
  count_fetched_records(L, head_records);
  if (layer == 0) ++decode_steps_;
  if (diag_enabled_) {
    if (layer == 0) diag_.clear();
    diag_.insert(diag_.end(), diag.begin(), diag.end());
  }
  DeviceArray up = backend_.upload(HostTensor::owned_f32({n, qs}, std::move(out)));
  backend_.copy(up.tensor(), out_t);
}

}  // namespace

std::unique_ptr<KvPolicy> make_kv_policy(Backend& backend, const ModelConfig& config,
                                         const KvSpec& spec_in, int64_t capacity) {
  const KvSpec spec = spec_in.resolved();
  if (spec.method == "dense") return make_dense_policy(backend, config, capacity);
#ifdef KVO_HAVE_CUDA
  if (cuda_stream_of(backend) && cuda_sparse_supported(spec, config))
    return make_cuda_sparse_policy(backend, config, spec, capacity);
#endif
  return std::make_unique<SparsePolicy>(backend, config, spec, capacity);
}

}  // namespace kvo
