#include "quant/uniform.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/error.h"

namespace kvo::quant {

UniformQuantizer::UniformQuantizer(int bits, int group) : bits_(bits), group_(group) {
  check(bits >= 1 && bits <= 8, "uniform: bits={} out of range (1..8)", bits);
  check(group >= 1 && group <= (1 << 20), "uniform: group={} out of range", group);
}

std::string UniformQuantizer::spec() const {
  return "uniform:bits=" + std::to_string(bits_) + ",group=" + std::to_string(group_);
}

void UniformQuantizer::encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const {
  const size_t rec = bytes_per_vector(dim), cbytes = codes_bytes(dim);
  const size_t G = (dim + group_ - 1) / group_;
  const uint32_t qmax = (1u << bits_) - 1;
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < (long long)n; ++i) {
    const float* v = x + size_t(i) * dim;
    uint8_t* r = out + size_t(i) * rec;
    std::memset(r, 0, cbytes);
    for (size_t g = 0; g < G; ++g) {
      const size_t b = g * group_, e = std::min(dim, b + group_);
      float lo = v[b], hi = v[b];
      for (size_t j = b; j < e; ++j) {
        lo = std::min(lo, v[j]);
        hi = std::max(hi, v[j]);
      }
      const float step = (hi - lo) / float(qmax), inv = 1.0f / step;
      for (size_t j = b; j < e; ++j) {
        const uint32_t q = uniform_code(v[j], lo, step, inv, qmax);
        for (int k = 0; k < bits_; ++k) {
          const size_t bit = j * bits_ + k;
          if ((q >> k) & 1u) r[bit / 8] |= uint8_t(1u << (bit % 8));
        }
      }
      std::memcpy(r + cbytes + 8 * g, &lo, 4);
      std::memcpy(r + cbytes + 8 * g + 4, &step, 4);
    }
  }
}

void UniformQuantizer::decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const {
  const size_t rec = bytes_per_vector(dim), cbytes = codes_bytes(dim);
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < (long long)n; ++i) {
    const uint8_t* r = bytes + size_t(i) * rec;
    for (size_t j = 0; j < dim; ++j) {
      uint32_t q = 0;
      for (int k = 0; k < bits_; ++k) {
        const size_t bit = j * bits_ + k;
        q |= uint32_t((r[bit / 8] >> (bit % 8)) & 1u) << k;
      }
      const size_t g = j / group_;
      float lo, step;
      std::memcpy(&lo, r + cbytes + 8 * g, 4);
      std::memcpy(&step, r + cbytes + 8 * g + 4, 4);
      out[size_t(i) * dim + j] = uniform_value(q, lo, step);
    }
  }
}

}  // namespace kvo::quant
