// Residual quantization (DESIGN.md §3): every m consecutive vectors share a meta-vector = their
// mean (summed in double, so m equal vectors give that vector exactly), quantized with `meta`;
// each vector's residual x_i - decode(meta) is quantized with `res`; x_i ~ meta + residual_i.
//
// Layout of a batch of n vectors of dimension D: blocks of m vectors (the last block may be
// shorter), each block = meta.encoded_bytes(1, D) bytes of its meta-vector followed by
// res.encoded_bytes(k, D) bytes of its k residuals. bits/value ~ b_meta/m + b_res.
#pragma once
#include "quant/quantizer.h"

namespace kvo::quant {

class ResidualQuantizer : public Quantizer {
 public:
  ResidualQuantizer(int m, QuantizerPtr meta, QuantizerPtr res);
  std::string spec() const override;
  std::string name() const override { return "residual"; }
  size_t encoded_bytes(size_t n, size_t dim) const override;
  void encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const override;
  void decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const override;

  int m() const { return m_; }
  const Quantizer& meta() const { return *meta_; }
  const Quantizer& res() const { return *res_; }

 private:
  int m_;
  QuantizerPtr meta_, res_;
};

}  // namespace kvo::quant
