// bf16 "quantizer": the identity baseline (what an unquantized KV cache stores).
// Record of one vector of dimension D: D bf16 values (raw bits, little-endian), 2*D bytes.
#pragma once
#include "quant/quantizer.h"

namespace kvo::quant {

class Bf16Quantizer : public Quantizer {
 public:
  std::string spec() const override { return "bf16"; }
  std::string name() const override { return "bf16"; }
  size_t encoded_bytes(size_t n, size_t dim) const override { return 2 * n * dim; }
  void encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const override;
  void decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const override;
};

}  // namespace kvo::quant
