// Residual quantization (DESIGN.md §3): every m consecutive vectors share a meta-vector = their
// mean (summed in double, so m equal vectors give that vector exactly), quantized with `meta`;
// each vector's residual x_i - decode(meta) is quantized with `res`; x_i ~ meta + residual_i.
//
// Layout of a batch of n vectors of dimension D: blocks of m vectors (the last block may be
// shorter), each block = meta.encoded_bytes(1, D) bytes of its meta-vector followed by
// res.encoded_bytes(k, D) bytes of its k residuals. bits/value ~ b_meta/m + b_res.
#pragma once
#include "quant/higgs.h"
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

// q's meta and residual quantizers when q is residual and both are HIGGS whose Hadamard group
// holds a whole vector of `dim`: then q's scores against a query are the sum of theirs, each
// taken in the rotated domain. Both null otherwise.
struct ResidualHiggsParts {
  const ResidualQuantizer* residual = nullptr;
  const HiggsQuantizer* meta = nullptr;
  const HiggsQuantizer* res = nullptr;
  // Meta-vectors of n vectors: one per m, the last over what is left.
  int64_t metas(int64_t n) const { return (n + residual->m() - 1) / residual->m(); }
};
ResidualHiggsParts residual_higgs_parts(const Quantizer& q, int dim);

}  // namespace kvo::quant
