#include "kv/kv_layout.h"

#include <algorithm>

#include "kv/kv_store.h"
#include "quant/higgs.h"
#include "quant/residual.h"
#include "util/error.h"

namespace kvo {

int64_t KvLayout::gpu_bytes() const {
  int64_t s = 0;
  for (const auto& i : gpu) s += i.bytes;
  return s;
}

int64_t KvLayout::cpu_bytes() const {
  int64_t s = 0;
  for (const auto& i : cpu) s += i.bytes;
  return s;
}

int64_t KvLayout::item(const std::string& name) const {
  for (const auto& i : gpu)
    if (i.name == name) return i.bytes;
  for (const auto& i : cpu)
    if (i.name == name) return i.bytes;
  return 0;
}

KvLayout plan_kv_layout(const KvSpec& spec, const ModelConfig& c, int64_t T, int64_t capacity,
                        int b) {
  check(T >= 0 && capacity >= T, "internal: layout for {} prompt tokens in a capacity of {}", T,
        capacity);
  const int64_t L = c.num_layers, H = c.num_kv_heads, D = c.head_dim, W = H * D;
  KvLayout lay;
  lay.method = spec.method;
  lay.prompt_tokens = T;
  lay.capacity = capacity;
  lay.dense_gpu_bytes = capacity * W * b * 2 * L;
  if (spec.method == "dense") {
    lay.gpu.push_back({"K/V", lay.dense_gpu_bytes});
    lay.sink_end = lay.local_start = T;
    return lay;
  }
  const int64_t C = spec.method == "quest" ? spec.page : spec.chunk;
  lay.chunk = C;
  lay.sink_end = std::min(T, (spec.sinks + C - 1) / C * C);
  lay.local_start = T - spec.local > 0 ? (T - spec.local) / C * C : 0;
  lay.local_start = std::max(lay.local_start, lay.sink_end);
  lay.middle_chunks = (lay.local_start - lay.sink_end) / C;
  lay.outlier_chunks = std::min(spec.outliers < 0 ? 0 : spec.outliers, lay.middle_chunks);
  lay.landmark_chunks = lay.middle_chunks - lay.outlier_chunks;
  const int64_t budget = spec.budget_tokens(T);
  lay.selected_chunks = std::min(lay.landmark_chunks, (budget + C - 1) / C);
  const int64_t k_tokens = lay.selected_chunks * C;
  const int64_t mid = lay.middle_tokens();

  if (spec.method == "quest") {
    lay.gpu.push_back({"K/V", capacity * W * b * 2 * L});
    lay.gpu.push_back({"page bounds", lay.landmark_chunks * W * 2 * b * L});
    return lay;
  }
  lay.gpu.push_back({"exact K/V", (lay.exact_prompt_tokens() + capacity - T) * W * b * 2 * L});
  lay.gpu.push_back({"outlier K/V", H * lay.outlier_chunks * C * D * b * 2 * L});
  lay.gpu.push_back({"gather buffers", 2 * k_tokens * W * b * 2});

  const quant::QuantizerPtr store = make_store_quantizer(spec.kv_store, head_group(D));
  lay.store_spans_heads = record_spans_heads(*store, D);
  const int64_t record_dim = lay.store_spans_heads ? W : D;
  lay.store_record_bytes = int64_t(store->encoded_bytes(1, size_t(record_dim)));
  if (const auto* higgs = dynamic_cast<const quant::HiggsQuantizer*>(store.get()))
    lay.store_scale_bytes =
        lay.store_record_bytes - int64_t(higgs->codes_bytes(size_t(record_dim)));
  const int64_t records = lay.store_spans_heads ? mid : mid * H;  // per tensor and layer
  const int64_t fetch = lay.store_host_bytes();                   // per selected (token, head)
  const int64_t tensors = spec.method == "yakv" ? 2 : 1;
  if (lay.store_scale_bytes > 0)
    lay.gpu.push_back({"store scales", records * lay.store_scale_bytes * tensors * L});
  if (spec.method == "shadowkv") {
    lay.rank = mid > 0 ? std::min({spec.rank, T, W}) : 0;
    check(spec.rank <= W, "--rank {} is larger than kv_heads * head_dim = {} of this model",
          spec.rank, W);
    lay.gpu.push_back({"low-rank U", mid * lay.rank * b * L});
    lay.gpu.push_back({"low-rank SV", lay.rank * W * b * L});
    lay.gpu.push_back({"landmarks", H * lay.landmark_chunks * D * b * L});
    lay.cpu.push_back({"values", records * lay.store_host_bytes() * L});
    lay.pcie_bytes_per_step = k_tokens * H * fetch * L;
  } else if (spec.method == "yakv") {
    const quant::QuantizerPtr lm = make_store_quantizer(spec.landmarks, head_group(D));
    lay.gpu.push_back(
        {"landmarks", H * int64_t(lm->encoded_bytes(size_t(lay.landmark_chunks), size_t(D))) * L});
    lay.cpu.push_back({"keys", records * lay.store_host_bytes() * L});
    lay.cpu.push_back({"values", records * lay.store_host_bytes() * L});
    lay.pcie_bytes_per_step = k_tokens * H * fetch * 2 * L;
  } else {
    fail("internal: no layout for KV method '{}'", spec.method);
  }
  if (k_tokens > 0 && mid > 0) {
    lay.fetch_records = lay.store_spans_heads ? std::min(H * k_tokens, mid) : H * k_tokens;
    lay.fetch_cache = spec.caches_fetches();
  }
  if (lay.fetch_cache)
    lay.gpu.push_back(
        {"fetch cache", 2 * lay.fetch_records * (lay.store_record_bytes * tensors + 4) * L});
  return lay;
}

namespace {

int64_t rounded(int64_t bytes) {
  const int64_t block = int64_t{2} << 20;
  return bytes > 0 ? (bytes + block - 1) / block * block : 0;
}

}  // namespace

KvFootprint plan_kv_footprint(const KvSpec& spec, const ModelConfig& c, int64_t T, int64_t capacity,
                              int b, bool cuda_policy) {
  const KvLayout lay = plan_kv_layout(spec, c, T, capacity, b);
  const int64_t L = c.num_layers, H = c.num_kv_heads, Hq = c.num_heads, D = c.head_dim, W = H * D;
  KvFootprint f;
  f.cpu_bytes = lay.cpu_bytes();
  if (spec.method == "dense") {  // one block for all keys, one for all values
    f.gpu_bytes = 2 * rounded(capacity * W * b * L);
    return f;
  }
  const bool quest = spec.method == "quest";
  const int64_t tensors = spec.method == "yakv" ? 2 : 1;  // offloaded stores
  f.prefill_gpu_bytes = (quest ? 2 : 3) * capacity * W * b * L;
  if (!cuda_policy) {
    f.gpu_bytes = lay.gpu_bytes();
    return f;
  }
  // Per layer (cuda_sparse_policy_impl.h's Layer).
  const int64_t C = lay.chunk, m = lay.landmark_chunks, k = lay.selected_chunks;
  const int64_t O = quest ? 0 : lay.outlier_chunks, S = O + k, mid = lay.middle_tokens();
  const int64_t exact_rows = quest ? capacity : lay.exact_prompt_tokens() + capacity - T;
  int64_t layer = 2 * rounded(exact_rows * W * b) + 2 * rounded(H * O * C * D * b);
  if (O > 0) layer += rounded(H * O * 4) + rounded(H * m * 4);
  if (quest) layer += rounded(m * 2 * W * b);
  if (spec.method == "shadowkv")
    layer += rounded(H * m * D * b) + rounded(mid * lay.rank * b) + rounded(lay.rank * W * b);
  if (spec.method == "yakv") layer += rounded(lay.item("landmarks") / L);
  layer += tensors * rounded(lay.item("store scales") / L / tensors);
  f.gpu_bytes = L * layer;
  // Shared by the layers: the attention buffers, selection and fetch scratch.
  const int64_t attn_rows = lay.exact_prompt_tokens() + S * C + capacity - T;
  int64_t shared = 2 * rounded(attn_rows * W * b) + rounded(Hq * m * 4) + rounded(H * m * 4) +
                   3 * rounded(H * std::max(k, S) * 4) + rounded(L * 8);  // + fetch totals
  if (!quest && k > 0) {
    const int64_t fetched = lay.fetch_records;
    const int64_t dim = lay.store_spans_heads ? W : D;
    shared += rounded(fetched * 4) +
              tensors * (rounded(fetched * lay.store_record_bytes) + rounded(fetched * dim * 2));
    if (lay.fetch_cache) {  // per layer two sets of lists and records; shared: the hits, phase
      f.gpu_bytes +=
          L * (rounded(2 * fetched * 4) + tensors * rounded(2 * fetched * lay.store_record_bytes));
      shared += rounded(fetched * 4) + rounded(4);
    }
    if (lay.store_spans_heads)  // flags, positions, scan; the counts listed (and cached)
      shared += 3 * rounded(mid * 4) + rounded(L * 4) + (lay.fetch_cache ? rounded(2 * L * 4) : 0);
    if (spec.method == "shadowkv")
      shared +=
          rounded(H * k * C * lay.rank * 2) + rounded(H * k * C * D * 4) + (int64_t{32} << 20);
    if (spec.method == "yakv") {
      // Landmarks the GPU scores in the rotated domain need no decoded copy; residual ones of
      // two HIGGS quantizers need their meta-vectors' scores (CUDA policy).
      const auto landmarks = make_store_quantizer(spec.landmarks, head_group(D));
      const quant::ResidualHiggsParts parts = quant::residual_higgs_parts(*landmarks, int(D));
      if (parts.residual)
        shared += rounded(Hq * parts.metas(m) * 4);
      else if (!dynamic_cast<const quant::HiggsQuantizer*>(landmarks.get()))
        shared += rounded(H * m * D * 2);
    }
  }
  f.gpu_bytes += shared;
  return f;
}

}  // namespace kvo
