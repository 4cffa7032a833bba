#include "quant/hadamard.h"

#include <cmath>

#include "util/error.h"

namespace kvo::quant {

void fwht(float* x, size_t h) {
  check(is_power_of_two(h), "Hadamard size must be a power of two, got {}", h);
  for (size_t s = 1; s < h; s <<= 1) {
    for (size_t i = 0; i < h; i += 2 * s) {
      for (size_t j = i; j < i + s; ++j) {
        const float a = x[j], b = x[j + s];
        x[j] = a + b;
        x[j + s] = a - b;
      }
    }
  }
}

void fwht_rows(float* x, size_t count, size_t h) {
  for (size_t r = 0; r < count; ++r) fwht(x + r * h, h);
}

float canonical_sum_squares(const float* x, size_t h) {
  float lane[32] = {};
  const size_t lanes = h < 32 ? h : 32;
  const size_t chunk = h / lanes;
  for (size_t l = 0; l < lanes; ++l) {
    float acc = 0.0f;
    for (size_t k = 0; k < chunk; ++k) {
      const float v = x[l * chunk + k];
      acc = std::fma(v, v, acc);
    }
    lane[l] = acc;
  }
  for (size_t off = 16; off >= 1; off >>= 1) {
    float next[32];
    for (size_t l = 0; l < 32; ++l) next[l] = lane[l] + lane[l ^ off];
    for (size_t l = 0; l < 32; ++l) lane[l] = next[l];
  }
  return lane[0];
}

}  // namespace kvo::quant
