// FP8 e4m3 ("e4m3fn": 1 sign, 4 exponent bits with bias 7, 3 mantissa bits, no infinities,
// 0x7f/0xff = NaN, largest finite 448). No scale: values are rounded to nearest even and
// saturated to +-448, as KV caches store keys and values directly.
// Record of one vector of dimension D: D bytes, one e4m3 value each. bits/value = 8.
// The scalar conversions float_to_e4m3 / e4m3_to_float live in scalar_codecs.h.
#pragma once
#include "quant/quantizer.h"

namespace kvo::quant {

class Fp8Quantizer : public Quantizer {
 public:
  std::string spec() const override { return "fp8"; }
  std::string name() const override { return "fp8"; }
  size_t encoded_bytes(size_t n, size_t dim) const override { return n * dim; }
  void encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const override;
  void decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const override;
};

}  // namespace kvo::quant
