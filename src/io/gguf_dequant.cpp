// Dequantization of ggml blocks to fp32. Layouts follow ggml's block structs byte for byte
// (little-endian, no padding), so each block is decoded from its raw bytes with memcpy-free
// byte arithmetic rather than by casting to a struct.
#include <cstring>

#include "io/gguf.h"
#include "model/tensor.h"
#include "util/error.h"

namespace kvo {
namespace {

constexpr int kQK = 32;    // elements per block of the legacy quants
constexpr int kQKK = 256;  // elements per super-block of the K-quants

inline float half_at(const uint8_t* p) {
  return f16_to_f32(uint16_t(p[0] | (p[1] << 8)));
}

// Q8_0 (34 bytes): f16 d, int8 qs[32]; x = d * q.
void dequant_q8_0(const uint8_t* b, float* y, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i, b += 34, y += kQK) {
    float d = half_at(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < kQK; ++j) y[j] = d * qs[j];
  }
}

// Q4_0 (18 bytes): f16 d, qs[16]; low nibbles are elements 0..15, high nibbles 16..31;
// x = d * (q - 8).
void dequant_q4_0(const uint8_t* b, float* y, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i, b += 18, y += kQK) {
    float d = half_at(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * (int(qs[j] & 0x0f) - 8);
      y[j + kQK / 2] = d * (int(qs[j] >> 4) - 8);
    }
  }
}

// Q4_1 (20 bytes): f16 d, f16 m, qs[16]; nibble order as Q4_0; x = d * q + m.
void dequant_q4_1(const uint8_t* b, float* y, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i, b += 20, y += kQK) {
    float d = half_at(b), m = half_at(b + 2);
    const uint8_t* qs = b + 4;
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * (qs[j] & 0x0f) + m;
      y[j + kQK / 2] = d * (qs[j] >> 4) + m;
    }
  }
}

// The 12 scale bytes of Q4_K hold 8 six-bit scales and 8 six-bit mins. Sub-blocks 0..3 keep
// them in the low 6 bits of bytes 0..3 (scale) and 4..7 (min); sub-blocks 4..7 take their low 4
// bits from bytes 8..11 (scale: low nibble, min: high nibble) and their top 2 bits from the
// spare top bits of bytes 0..3 (scale) and 4..7 (min).
inline void q4k_scale_min(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K (144 bytes): f16 d, f16 dmin, scales[12], qs[128]. 8 sub-blocks of 32; each 32-byte run
// of qs holds two sub-blocks (low nibbles first). x = d*sc * q - dmin*m.
void dequant_q4_k(const uint8_t* b, float* y, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i, b += 144) {
    float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* q = b + 16;
    for (int sub = 0; sub < 8; sub += 2, q += 32) {
      int sc0, m0, sc1, m1;
      q4k_scale_min(sub, scales, &sc0, &m0);
      q4k_scale_min(sub + 1, scales, &sc1, &m1);
      float d0 = d * sc0, dm0 = dmin * m0, d1 = d * sc1, dm1 = dmin * m1;
      for (int l = 0; l < 32; ++l) *y++ = d0 * (q[l] & 0x0f) - dm0;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] >> 4) - dm1;
    }
  }
}

// Q6_K (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d.
// Each half of 128 elements uses 64 ql bytes, 32 qh bytes and 8 scales; element l + 32k of the
// half (k = 0..3) takes ql's low (k even) or high (k odd) nibble from ql[l + 32*(k&1)] and bits
// 2k..2k+1 of qh[l]; its scale is scales[l/16 + 2k]. x = d * scale * (q - 32).
void dequant_q6_k(const uint8_t* b, float* y, int64_t nblocks) {
  for (int64_t i = 0; i < nblocks; ++i, b += 210) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    float d = half_at(b + 208);
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
      for (int l = 0; l < 32; ++l) {
        int is = l / 16;
        int q1 = int((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
        int q2 = int((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

}  // namespace

void dequantize(uint32_t type, const void* src, float* dst, int64_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(src);
  int block = ggml_block_size(type);  // throws for unknown types
  check(n >= 0 && n % block == 0,
        "dequantize {}: {} elements is not a multiple of the block size {}", ggml_type_name(type),
        n, block);
  if (n == 0) return;  // empty tensors may come with null pointers
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
      std::memcpy(dst, b, size_t(n) * 4);
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = half_at(b + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i)
        dst[i] = bf16_to_f32(uint16_t(b[2 * i] | (b[2 * i + 1] << 8)));
      return;
    case GgmlType::Q8_0:
      dequant_q8_0(b, dst, n / kQK);
      return;
    case GgmlType::Q4_0:
      dequant_q4_0(b, dst, n / kQK);
      return;
    case GgmlType::Q4_1:
      dequant_q4_1(b, dst, n / kQK);
      return;
    case GgmlType::Q4_K:
      dequant_q4_k(b, dst, n / kQKK);
      return;
    case GgmlType::Q6_K:
      dequant_q6_k(b, dst, n / kQKK);
      return;
    default:
      break;
  }
  fail("cannot dequantize ggml type {} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)",
       ggml_type_name(type));
}

}  // namespace kvo
