#include "quant/residual.h"

#include <algorithm>

#include "util/error.h"

namespace kvo::quant {

ResidualQuantizer::ResidualQuantizer(int m, QuantizerPtr meta, QuantizerPtr res)
    : m_(m), meta_(std::move(meta)), res_(std::move(res)) {
  check(m >= 1 && m <= 65536, "residual: m={} out of range (1..65536)", m);
  check(meta_ && res_, "residual: needs both meta= and res= quantizers");
}

std::string ResidualQuantizer::spec() const {
  return "residual:m=" + std::to_string(m_) + ",meta=" + meta_->spec() + ",res=" + res_->spec();
}

size_t ResidualQuantizer::encoded_bytes(size_t n, size_t dim) const {
  size_t total = 0;
  for (size_t b = 0; b < n; b += m_) {
    const size_t k = std::min(size_t(m_), n - b);
    total += meta_->encoded_bytes(1, dim) + res_->encoded_bytes(k, dim);
  }
  return total;
}

void ResidualQuantizer::encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const {
  std::vector<float> mean(dim), meta_hat(dim), resid;
  const size_t meta_bytes = meta_->encoded_bytes(1, dim);
  for (size_t b = 0; b < n; b += m_) {
    const size_t k = std::min(size_t(m_), n - b);
    for (size_t j = 0; j < dim; ++j) {
      double s = 0.0;
      for (size_t i = 0; i < k; ++i) s += x[(b + i) * dim + j];
      mean[j] = float(s / double(k));
    }
    meta_->encode_into(mean.data(), 1, dim, out);
    meta_->decode(out, 1, dim, meta_hat.data());
    out += meta_bytes;
    resid.resize(k * dim);
    for (size_t i = 0; i < k; ++i)
      for (size_t j = 0; j < dim; ++j) resid[i * dim + j] = x[(b + i) * dim + j] - meta_hat[j];
    res_->encode_into(resid.data(), k, dim, out);
    out += res_->encoded_bytes(k, dim);
  }
}

void ResidualQuantizer::decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const {
  std::vector<float> meta_hat(dim);
  const size_t meta_bytes = meta_->encoded_bytes(1, dim);
  for (size_t b = 0; b < n; b += m_) {
    const size_t k = std::min(size_t(m_), n - b);
    meta_->decode(bytes, 1, dim, meta_hat.data());
    bytes += meta_bytes;
    float* o = out + b * dim;
    res_->decode(bytes, k, dim, o);
    bytes += res_->encoded_bytes(k, dim);
    for (size_t i = 0; i < k; ++i)
      for (size_t j = 0; j < dim; ++j) o[i * dim + j] += meta_hat[j];
  }
}

ResidualHiggsParts residual_higgs_parts(const Quantizer& q, int dim) {
  const auto* r = dynamic_cast<const ResidualQuantizer*>(&q);
  if (!r) return {};
  const auto* meta = dynamic_cast<const HiggsQuantizer*>(&r->meta());
  const auto* res = dynamic_cast<const HiggsQuantizer*>(&r->res());
  if (!meta || !res || meta->group() < dim || res->group() < dim) return {};
  return {r, meta, res};
}

}  // namespace kvo::quant
