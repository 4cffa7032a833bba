#include "quant/fp8.h"

#include <cmath>

namespace kvo::quant {

float e4m3_to_float(uint8_t b) {
  const int sign = b >> 7, exp = (b >> 3) & 0xf, man = b & 7;
  float v;
  if (exp == 0xf && man == 7) return NAN;
  if (exp == 0)
    v = std::ldexp(float(man), -9);  // subnormal: man * 2^-6 / 8
  else
    v = std::ldexp(1.0f + float(man) / 8.0f, exp - 7);
  return sign ? -v : v;
}

uint8_t float_to_e4m3(float x) {
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const float a = std::fabs(x);
  // Magnitudes grow monotonically with the 7-bit code 0..126; find the bracketing pair.
  if (a >= 448.0f) return sign | 126;
  int lo = 0, hi = 126;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (e4m3_to_float(uint8_t(mid)) <= a)
      lo = mid;
    else
      hi = mid;
  }
  const float dl = a - e4m3_to_float(uint8_t(lo)), dh = e4m3_to_float(uint8_t(hi)) - a;
  // Round to nearest, ties to the even code (even mantissa).
  const int code = dl < dh ? lo : dh < dl ? hi : ((lo & 1) ? hi : lo);
  return sign | uint8_t(code);
}

void Fp8Quantizer::encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const {
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < (long long)(n * dim); ++i) out[i] = float_to_e4m3(x[i]);
}

void Fp8Quantizer::decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const {
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < (long long)(n * dim); ++i) out[i] = e4m3_to_float(bytes[i]);
}

}  // namespace kvo::quant
