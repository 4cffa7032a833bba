// One interface for every KV/landmark quantizer (HIGGS, residual, uniform, FP8, bf16), chosen
// everywhere by a spec string (see parse_quantizer in spec.h).
//
// Encoded layout (common to all quantizers): a batch of n vectors of dimension D becomes one
// byte buffer of encoded_bytes(n, D) bytes. For every quantizer except residual, each vector
// owns a fixed-size record of bytes_per_vector(D) bytes, records back to back, so a KV store
// can append, gather and copy single tokens. Each quantizer's header documents its record.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quant/scalar_codecs.h"

namespace kvo::quant {

class Quantizer {
 public:
  virtual ~Quantizer() = default;

  // Canonical spec string; parse_quantizer(spec()) yields an equal quantizer.
  virtual std::string spec() const = 0;
  // Short family name: "higgs", "uniform", "fp8", "bf16", "residual".
  virtual std::string name() const = 0;

  virtual size_t encoded_bytes(size_t n, size_t dim) const = 0;
  // x: [n, dim] row-major fp32. out: encoded_bytes(n, dim) bytes.
  virtual void encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const = 0;
  // bytes: encoded_bytes(n, dim) bytes. out: [n, dim] fp32.
  virtual void decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const = 0;

  std::vector<uint8_t> encode(const float* x, size_t n, size_t dim) const;
  // Dequantize into a bf16 buffer (round to nearest even): out [n, dim] as raw bf16 bits.
  void decode_bf16(const uint8_t* bytes, size_t n, size_t dim, uint16_t* out) const;

  // Storage cost per value of a long run of vectors of dimension dim, scales/metadata included.
  virtual double bits_per_value(size_t dim) const;
};

using QuantizerPtr = std::unique_ptr<Quantizer>;

}  // namespace kvo::quant
