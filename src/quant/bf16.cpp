#include "quant/bf16.h"

#include <cstring>

namespace kvo::quant {

void Bf16Quantizer::encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const {
  for (size_t i = 0; i < n * dim; ++i) {
    const uint16_t b = float_to_bf16(x[i]);
    std::memcpy(out + 2 * i, &b, 2);
  }
}

void Bf16Quantizer::decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const {
  for (size_t i = 0; i < n * dim; ++i) {
    uint16_t b;
    std::memcpy(&b, bytes + 2 * i, 2);
    out[i] = bf16_to_float(b);
  }
}

}  // namespace kvo::quant
