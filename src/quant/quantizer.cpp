#include "quant/quantizer.h"

#include <cmath>
#include <cstring>

namespace kvo::quant {

std::vector<uint8_t> Quantizer::encode(const float* x, size_t n, size_t dim) const {
  std::vector<uint8_t> out(encoded_bytes(n, dim));
  encode_into(x, n, dim, out.data());
  return out;
}

void Quantizer::decode_bf16(const uint8_t* bytes, size_t n, size_t dim, uint16_t* out) const {
  std::vector<float> tmp(n * dim);
  decode(bytes, n, dim, tmp.data());
  for (size_t i = 0; i < tmp.size(); ++i) out[i] = float_to_bf16(tmp[i]);
}

double Quantizer::bits_per_value(size_t dim) const {
  // A long run amortizes anything shared between vectors (residual meta-vectors).
  const size_t n = 4096;
  return 8.0 * static_cast<double>(encoded_bytes(n, dim)) / static_cast<double>(n * dim);
}

uint16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace kvo::quant
