#include "kv/sparse_setup.h"

#include <fmt/format.h>

#include "kv/kv_store.h"
#include "util/error.h"

namespace kvo {

SparseSetup::SparseSetup(const ModelConfig& config, const KvSpec& spec)
    : method_(spec.method == "shadowkv" ? SparseMethod::ShadowKV
              : spec.method == "yakv"   ? SparseMethod::YAKV
                                        : SparseMethod::Quest),
      H_(config.num_kv_heads),
      D_(config.head_dim),
      Hq_(config.num_heads),
      G_(config.num_heads / config.num_kv_heads),
      W_(int64_t(config.num_kv_heads) * config.head_dim) {
  if (method_ == SparseMethod::ShadowKV)
    check(spec.rank <= W_, "--rank {} is larger than kv_heads * head_dim = {} of this model",
          spec.rank, W_);
  if (method_ != SparseMethod::Quest) store_ = make_store_quantizer(spec.kv_store, head_group(D_));
  if (method_ == SparseMethod::YAKV)
    landmark_q_ = make_store_quantizer(spec.landmarks, head_group(D_));
}

std::string SparseSetup::describe(const KvSpec& spec, const KvLayout& layout,
                                  int64_t prompt) const {
  return fmt::format(
      "{}: prompt {} tokens, sinks [0,{}), {} middle chunks of {} ({} outliers, {} with "
      "landmarks, {} selected), local [{},{}){}",
      spec.to_string(), prompt, layout.sink_end, layout.middle_chunks, layout.chunk,
      layout.outlier_chunks, layout.landmark_chunks, layout.selected_chunks, layout.local_start,
      prompt, method_ == SparseMethod::ShadowKV ? fmt::format(", rank {}", layout.rank) : "");
}

HeadStep SparseSetup::head_step(int layer, int h, int64_t q_len, int64_t start, const float* q,
                                const float* out) const {
  HeadStep s;
  s.layer = layer;
  s.kv_head = h;
  s.group = G_;
  s.head_dim = D_;
  s.q_len = q_len;
  s.start = start;
  s.q = q;
  s.out = out;
  s.q_stride = int64_t(Hq_) * D_;
  s.scale = scale();
  return s;
}

}  // namespace kvo
