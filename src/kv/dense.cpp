// The dense KV cache: the accuracy and speed baseline every sparse policy is compared with.
#include <cmath>

#include "kv/kv_policy.h"
#include "util/error.h"

namespace kvo {
namespace {

class DensePolicy final : public KvPolicy {
 public:
  DensePolicy(Backend& backend, const ModelConfig& config, int64_t capacity)
      : backend_(backend), config_(config), capacity_(capacity) {
    // One block each for every layer's keys and values: device allocations are rounded up to
    // 2 MiB, which per layer would waste up to 12% of a short cache (and of a full batch).
    const int64_t width = int64_t{config.num_kv_heads} * config.head_dim;
    keys_ = backend.alloc(config.num_layers * capacity, width);    // (layer * tokens, kv width)
    values_ = backend.alloc(config.num_layers * capacity, width);  // (layer * tokens, kv width)
  }

  std::string name() const override { return "dense"; }

  void attend(int layer, int64_t start, const Tensor& q, const Tensor& /*k_pre*/, const Tensor& k,
              const Tensor& v, const Tensor& out) override {
    const int64_t n = q.rows;
    check(start + n <= capacity_, "the sequence needs {} tokens but the KV cache holds {}",
          start + n, capacity_);
    const Tensor keys = layer_rows(keys_, layer), values = layer_rows(values_, layer);
    backend_.copy(k, keys.row_range(start, n));
    backend_.copy(v, values.row_range(start, n));
    backend_.attention(q, keys.row_range(0, start + n), values.row_range(0, start + n),
                       shape(n, start, start + n), out);
    if (layer == config_.num_layers - 1) length_ = start + n;
  }

  void copy_from(const KvPolicy& prefilled) override {
    const auto* src = dynamic_cast<const DensePolicy*>(&prefilled);
    check(src && src->capacity_ == capacity_ && length_ == 0,
          "internal: a fresh dense cache of capacity {} cannot copy a '{}' cache of capacity {}",
          capacity_, prefilled.name(), prefilled.capacity());
    for (int l = 0; l < config_.num_layers; ++l) {
      backend_.copy(layer_rows(src->keys_, l).row_range(0, src->length_),
                    layer_rows(keys_, l).row_range(0, src->length_));
      backend_.copy(layer_rows(src->values_, l).row_range(0, src->length_),
                    layer_rows(values_, l).row_range(0, src->length_));
    }
    length_ = src->length_;
  }

  bool recordable() const override { return true; }

  void attend_at(int layer, const Tensor& position, const Tensor& q, const Tensor& /*k_pre*/,
                 const Tensor& k, const Tensor& v, const Tensor& out) override {
    const Tensor keys = layer_rows(keys_, layer), values = layer_rows(values_, layer);
    backend_.copy_rows_at(k, keys, position);
    backend_.copy_rows_at(v, values, position);
    backend_.attention_at(q, keys, values, shape(q.rows, 0, capacity_), position, out);
  }

  Tables tables_at(int layer) const override {
    return {layer_rows(keys_, layer), layer_rows(values_, layer), shape(1, 0, capacity_)};
  }

  void recorded_step_done(int64_t length) override {
    check(length <= capacity_, "the sequence needs {} tokens but the KV cache holds {}", length,
          capacity_);
    length_ = length;
  }

  int64_t length() const override { return length_; }
  int64_t capacity() const override { return capacity_; }

  KvMemoryReport memory() const override {
    KvMemoryReport r;
    r.tokens = length_;
    r.gpu_bytes = keys_.nbytes() + values_.nbytes();
    return r;
  }

 private:
  AttentionShape shape(int64_t q_len, int64_t q_start, int64_t kv_len) const {
    return {config_.num_heads,
            config_.num_kv_heads,
            config_.head_dim,
            q_len,
            q_start,
            kv_len,
            1.0f / std::sqrt(float(config_.head_dim))};
  }

  // (capacity, kv width) rows of one layer.
  Tensor layer_rows(const DeviceArray& all, int layer) const {
    return all.tensor().row_range(int64_t{layer} * capacity_, capacity_);
  }

  Backend& backend_;
  ModelConfig config_;
  int64_t capacity_;
  int64_t length_ = 0;
  DeviceArray keys_, values_;
};

}  // namespace

std::unique_ptr<KvPolicy> make_dense_policy(Backend& backend, const ModelConfig& config,
                                            int64_t capacity) {
  return std::make_unique<DensePolicy>(backend, config, capacity);
}

}  // namespace kvo
