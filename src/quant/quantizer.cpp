#include "quant/quantizer.h"

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

}  // namespace kvo::quant
