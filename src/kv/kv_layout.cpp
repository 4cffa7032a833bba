#include "kv/kv_layout.h"

#include <algorithm>

#include "kv/kv_store.h"
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

  const quant::QuantizerPtr store = make_store_quantizer(spec.kv_store, kv_store_group(H, D));
  lay.store_spans_heads = record_spans_heads(*store, D);
  lay.store_record_bytes = lay.store_spans_heads ? int64_t(store->encoded_bytes(1, W))
                                                 : int64_t(store->encoded_bytes(1, D));
  const int64_t token_record =
      lay.store_spans_heads ? lay.store_record_bytes : H * lay.store_record_bytes;
  const int64_t fetch = lay.store_record_bytes;  // per selected (token, head)
  if (spec.method == "shadowkv") {
    lay.rank = mid > 0 ? std::min({spec.rank, T, W}) : 0;
    check(spec.rank <= W, "--rank {} is larger than kv_heads * head_dim = {} of this model",
          spec.rank, W);
    lay.gpu.push_back({"low-rank U", mid * lay.rank * b * L});
    lay.gpu.push_back({"low-rank SV", lay.rank * W * b * L});
    lay.gpu.push_back({"landmarks", H * lay.landmark_chunks * D * b * L});
    lay.cpu.push_back({"values", mid * token_record * L});
    lay.pcie_bytes_per_step = k_tokens * H * fetch * L;
  } else if (spec.method == "yakv") {
    const quant::QuantizerPtr lm = make_store_quantizer(spec.landmarks, head_group(D));
    lay.gpu.push_back(
        {"landmarks", H * int64_t(lm->encoded_bytes(size_t(lay.landmark_chunks), size_t(D))) * L});
    lay.cpu.push_back({"keys", mid * token_record * L});
    lay.cpu.push_back({"values", mid * token_record * L});
    lay.pcie_bytes_per_step = k_tokens * H * fetch * 2 * L;
  } else {
    fail("internal: no layout for KV method '{}'", spec.method);
  }
  return lay;
}

}  // namespace kvo
