// Scalar conversions shared by the CPU quantizers and their CUDA kernels (src/quant/cuda): one
// definition compiled for both, so CPU and GPU produce the same bits by construction. Explicit
// fmaf where a product meets a sum: nvcc (and gcc with -ffp-contract=fast) would otherwise fuse
// or not fuse at will and the two sides could round differently.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define KVO_HD __host__ __device__
#define KVO_UNROLL _Pragma("unroll")
#else
#define KVO_HD
#define KVO_UNROLL
#endif

namespace kvo::quant {

KVO_HD inline uint32_t float_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}

KVO_HD inline float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}

KVO_HD inline bool is_nan_bits(uint32_t u) {
  return (u & 0x7fffffffu) > 0x7f800000u;
}

// fp32 -> bf16 bits, round to nearest even (NaN stays NaN, quieted).
KVO_HD inline uint16_t float_to_bf16(float x) {
  uint32_t u = float_bits(x);
  if (is_nan_bits(u)) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

KVO_HD inline float bf16_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

// FP8 e4m3fn (fp8.h): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits, 0x7f/0xff = NaN.
KVO_HD inline float e4m3_to_float(uint8_t b) {
  const uint32_t sign = uint32_t(b >> 7) << 31, exp = (b >> 3) & 0xf, man = b & 7;
  if (exp == 0xf && man == 7) return bits_float(0x7fc00000u);
  if (exp == 0) return bits_float(float_bits(float(man) * 0.001953125f) | sign);  // man * 2^-9
  return bits_float(sign | ((exp + 120) << 23) | (man << 20));
}

// Round to nearest, ties to the even code, saturate to +-448.
KVO_HD inline uint8_t float_to_e4m3(float x) {
  const uint32_t u = float_bits(x);
  if (is_nan_bits(u)) return 0x7f;
  const uint8_t sign = (u >> 31) ? 0x80 : 0;
  const float a = bits_float(u & 0x7fffffffu);
  if (a >= 448.0f) return sign | 126;
  // Magnitudes grow monotonically with the 7-bit code 0..126; find the bracketing pair.
  int lo = 0, hi = 126;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (e4m3_to_float(uint8_t(mid)) <= a)
      lo = mid;
    else
      hi = mid;
  }
  const float dl = a - e4m3_to_float(uint8_t(lo)), dh = e4m3_to_float(uint8_t(hi)) - a;
  const int code = dl < dh ? lo : dh < dl ? hi : ((lo & 1) ? hi : lo);
  return sign | uint8_t(code);
}

// Uniform quantizer (uniform.h): the code of v in a group with minimum lo, step and inv =
// 1 / step (rounded, as `1.0f / step` gives it), and its value. The code is rint((v - lo) / step)
// clamped to [0, qmax], and the division was the encoder's costliest step, so the product
// q = (v - lo) * inv stands in for the quotient where it provably rounds to the same integer:
// with inv a normal number, q is within 2^-23 q of the exact quotient, and the rounded quotient
// within 2^-24 of it, so for q < 512 (bits <= 8) the two differ by < 2^-13 and lie on the same
// side of every half-integer that is over 2^-12 from q. Near a half-integer (a few in 10^4), and
// for NaN, infinities and subnormal reciprocals, the division decides. q - floor(q) is exact.
KVO_HD inline uint32_t uniform_code(float v, float lo, float step, float inv, uint32_t qmax) {
  if (!(step > 0.0f)) return 0;
  const float a = v - lo, q = a * inv;
  const bool divide =
      !(inv >= 0x1p-126f && q >= 0.0f && q < 512.0f && fabsf(q - floorf(q) - 0.5f) > 0x1p-12f);
  const float t = rintf(divide ? a / step : q);
  return uint32_t(t < 0.0f ? 0.0f : t > float(qmax) ? float(qmax) : t);
}

KVO_HD inline float uniform_value(uint32_t code, float lo, float step) {
  return fmaf(float(code), step, lo);
}

}  // namespace kvo::quant
