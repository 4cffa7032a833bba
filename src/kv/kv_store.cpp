#include "kv/kv_store.h"

#include <cstring>

#include "quant/higgs.h"
#include "quant/spec.h"
#include "util/error.h"

namespace kvo {
namespace {

class F32Quantizer final : public quant::Quantizer {
 public:
  std::string spec() const override { return "f32"; }
  std::string name() const override { return "f32"; }
  size_t encoded_bytes(size_t n, size_t dim) const override { return 4 * n * dim; }
  void encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const override {
    std::memcpy(out, x, 4 * n * dim);
  }
  void decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const override {
    std::memcpy(out, bytes, 4 * n * dim);
  }
};

}  // namespace

void validate_store_spec(const std::string& spec, const std::string& flag) {
  if (spec == "f32") return;
  try {
    (void)quant::parse_quantizer(spec);
  } catch (const Error& e) {
    fail("{}: {}", flag, e.what());
  }
}

quant::QuantizerPtr make_store_quantizer(const std::string& spec, int64_t default_group) {
  if (spec == "f32") return std::make_unique<F32Quantizer>();
  return quant::parse_quantizer(spec, static_cast<int>(default_group));
}

int64_t head_group(int64_t head_dim) {
  int64_t g = 64;
  while (g < head_dim) g *= 2;
  return g;
}

bool record_spans_heads(const quant::Quantizer& q, int64_t head_dim) {
  auto* h = dynamic_cast<const quant::HiggsQuantizer*>(&q);
  return h && h->group() > head_dim;
}

}  // namespace kvo
