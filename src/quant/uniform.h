// Uniform k-bit quantizer per group, asymmetric min/max (KIVI-style baseline).
// Per group of `group` consecutive values: lo = min, step = (max - min) / (2^bits - 1),
// code = round((x - lo) / step) clamped to [0, 2^bits - 1]; decode lo + code * step.
//
// Record of one vector of dimension D (G = ceil(D / group) groups, the last may be short):
//   codes : D codes of `bits` bits as one little-endian bit stream (value j at bit j*bits),
//           zero-padded to a multiple of 4 bytes
//   params: [G][2] fp32 (lo, step)
// bits/value = 8 * bytes_per_vector(D) / D  (= bits + 64/group when group | D and 32 | D*bits).
#pragma once
#include "quant/quantizer.h"

namespace kvo::quant {

class UniformQuantizer : public Quantizer {
 public:
  UniformQuantizer(int bits, int group = 64);
  std::string spec() const override;
  std::string name() const override { return "uniform"; }
  size_t encoded_bytes(size_t n, size_t dim) const override { return n * bytes_per_vector(dim); }
  void encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const override;
  void decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const override;

  int bits() const { return bits_; }
  int group() const { return group_; }
  size_t codes_bytes(size_t dim) const { return ((dim * bits_ + 7) / 8 + 3) & ~size_t(3); }
  size_t bytes_per_vector(size_t dim) const {
    return codes_bytes(dim) + 8 * ((dim + group_ - 1) / group_);
  }

 private:
  int bits_, group_;
};

}  // namespace kvo::quant
