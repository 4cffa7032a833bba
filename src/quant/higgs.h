// HIGGS quantizer (DESIGN.md §4): per Hadamard group of h values (power of two, 64..4096),
// s = ||x||_2, y = H x / s (H the unnormalized Sylvester Walsh-Hadamard matrix, so ||y|| =
// sqrt(h) and y_i ~ N(0,1)), y split into p-tuples, each replaced by the index of its nearest
// EDEN{p}-{n} grid point (ties to the lowest index). Decode: x = H (grid[code] * s) / h.
//
// Record of one vector of dimension D (bytes_per_vector(D) bytes, records back to back):
//   G = ceil(D / h) groups; group g covers x[g*h, min(D, (g+1)*h)), zero-padded to h.
//   T = ceil(h / p) tuples per group; the last tuple is zero-padded when p does not divide h.
//   codes  : [G][T] code words, uint8 when n <= 256 else uint16 little-endian,
//            then zero bytes up to a multiple of 4 (so the scales are 4-byte aligned)
//   scales : [G] fp32, s of each group (fp32 rather than fp16: 32/h bits per value, 0.25
//            bit at h=128, and no overflow for large-norm keys)
// bits/value = 8 * bytes_per_vector(D) / D  (= log2(n)/p + 32/h when p | h and h | D).
//
// Scoring in the rotated domain: k.q = sum_g (s_g / h) * sum_t grid[c_gt] . (H q_g)_t,
// so a query is rotated once (rotate_query) and keys are never dequantized.
#pragma once
#include "quant/grid.h"
#include "quant/quantizer.h"

namespace kvo::quant {

class HiggsQuantizer : public Quantizer {
 public:
  // p, n select EDEN{p}-{n}.txt; group: Hadamard group size h.
  HiggsQuantizer(int p, int n, int group = 128);

  std::string spec() const override;
  std::string name() const override { return "higgs"; }
  size_t encoded_bytes(size_t n, size_t dim) const override { return n * bytes_per_vector(dim); }
  void encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const override;
  void decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const override;

  int p() const { return grid_->dim; }
  int n_points() const { return grid_->size; }
  int group() const { return group_; }
  const EdenGrid& grid() const { return *grid_; }
  int tuples() const { return (group_ + p() - 1) / p(); }                  // T
  size_t groups(size_t dim) const { return (dim + group_ - 1) / group_; }  // G
  int code_bytes() const { return n_points() <= 256 ? 1 : 2; }
  size_t codes_bytes(size_t dim) const;  // padded to 4
  size_t bytes_per_vector(size_t dim) const { return codes_bytes(dim) + 4 * groups(dim); }

  // Normalized rotated group y (h values) -> T codes; the core shared by encode and tests.
  void encode_rotated_group(const float* y, uint32_t* codes) const;
  // One group of h values (zero-padded) -> T codes and its scale.
  void encode_group(const float* xg, uint32_t* codes, float* scale) const;

  // q: [dim] -> [G * h]: H q_g per group (zero-padded), the query's rotated form.
  std::vector<float> rotate_query(const float* q, size_t dim) const;
  // scores[i] = dot(q, decode(key i)) computed from codes; q_rot from rotate_query.
  void score(const float* q_rot, const uint8_t* keys, size_t n, size_t dim, float* scores) const;

 private:
  const EdenGrid* grid_;
  int group_;
};

}  // namespace kvo::quant
