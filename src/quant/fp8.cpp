#include "quant/fp8.h"

namespace kvo::quant {

void Fp8Quantizer::encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const {
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < (long long)(n * dim); ++i) out[i] = float_to_e4m3(x[i]);
}

void Fp8Quantizer::decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const {
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < (long long)(n * dim); ++i) out[i] = e4m3_to_float(bytes[i]);
}

}  // namespace kvo::quant
