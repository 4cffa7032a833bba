// Fast Walsh-Hadamard transform, unnormalized, Sylvester (natural) order:
// H_1 = [1], H_2k = [[H_k, H_k], [H_k, -H_k]]; applying it twice multiplies by h.
//
// Bit-exactness contract with the CUDA kernels (src/quant/cuda): stages run with stride
// 1, 2, 4, ..., h/2 and each butterfly computes (a + b, a - b) from the same two operands, so
// every output is the same tree of fp32 additions on CPU and GPU, whatever the thread layout.
// canonical_sum_squares fixes the summation order of the HIGGS group norm the same way.
#pragma once
#include <cstddef>

namespace kvo::quant {

inline bool is_power_of_two(size_t n) {
  return n != 0 && (n & (n - 1)) == 0;
}

// x: [h] in place; h a power of two (any, 1..2^20).
void fwht(float* x, size_t h);
// x: [count, h] in place, one transform per row.
void fwht_rows(float* x, size_t count, size_t h);

// Sum of squares of x[0..h) in the order the CUDA warp computes it: 32 lanes each accumulate a
// contiguous chunk of h/32 values with fma (h >= 32; smaller h uses h lanes of one value), then
// an xor-butterfly over the lanes (offsets 16, 8, 4, 2, 1).
float canonical_sum_squares(const float* x, size_t h);

}  // namespace kvo::quant
