// FP8 (e4m3) and bf16 records on CUDA: one value per element, converted with the CPU's own
// scalar functions (scalar_codecs.h), or for fp8 of bf16 values by the hardware, which rounds
// them the same way.
#include <cuda_fp8.h>

#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"

namespace kvo::quant::cuda {
namespace {

constexpr int kThreads = 256;

// e4m3 codes of 8 values. Values that are exact bf16 numbers go through the hardware conversion
// (round to nearest even, saturating to +-448; NaN set to 0x7f as float_to_e4m3 does), which
// the test Fp8AndBf16EncodeEqualCpuOnEveryBf16Value checks against float_to_e4m3 on all 65536
// of them; other values (fp32 rows, residuals) take float_to_e4m3 itself.
__device__ __forceinline__ uint2 e4m3x8(const float (&v)[8], bool exact_bf16) {
  uint32_t w[2] = {0, 0};
#pragma unroll
  for (int k = 0; k < 8; k += 2) {
    uint32_t pair;
    if (exact_bf16) {
      pair = __nv_cvt_float2_to_fp8x2(make_float2(v[k], v[k + 1]), __NV_SATFINITE, __NV_E4M3);
      if (v[k] != v[k]) pair = (pair & 0xff00u) | 0x7fu;
      if (v[k + 1] != v[k + 1]) pair = (pair & 0x00ffu) | 0x7f00u;
    } else {
      pair = uint32_t(float_to_e4m3(v[k])) | (uint32_t(float_to_e4m3(v[k + 1])) << 8);
    }
    w[k / 4] |= pair << (16 * ((k / 2) % 2));
  }
  return make_uint2(w[0], w[1]);
}

// A thread converts 8 consecutive values of a row (one 16-byte load of an aligned bf16 row) and
// writes their 8 fp8 or 16 bf16 bytes, in one store when the record allows.
__global__ void elementwise_encode_kernel(bool fp8, SourceRows src, size_t n, RecordMap out) {
  const uint32_t per_row = uint32_t((src.dim + 7) / 8);
  const size_t chunks = n * per_row;
  const bool exact_bf16 = src.bf16 && !src.minus;
  for (size_t t = size_t(blockIdx.x) * blockDim.x + threadIdx.x; t < chunks;
       t += size_t(gridDim.x) * blockDim.x) {
    const size_t i = div_index(t, per_row), j = (t - i * per_row) * 8;
    float v[8];
    src.row(i).load<8>(j, src.dim, v);
    uint8_t* rec = out.at(i);
    const bool whole = j + 8 <= src.dim;
    if (fp8) {
      const uint2 codes = e4m3x8(v, exact_bf16);
      uint8_t* p = rec + j;
      if (whole && reinterpret_cast<uintptr_t>(p) % 8 == 0) {
        *reinterpret_cast<uint2*>(p) = codes;
      } else {
        for (int k = 0; j + k < src.dim && k < 8; ++k)
          p[k] = uint8_t((k < 4 ? codes.x : codes.y) >> (8 * (k % 4)));
      }
    } else {
      uint32_t w[4];
#pragma unroll
      for (int k = 0; k < 4; ++k)
        w[k] = uint32_t(float_to_bf16(v[2 * k])) | (uint32_t(float_to_bf16(v[2 * k + 1])) << 16);
      uint8_t* p = rec + 2 * j;
      if (whole && reinterpret_cast<uintptr_t>(p) % 16 == 0) {
        *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
      } else {
        for (int k = 0; j + k / 2 < src.dim && k < 16; ++k)
          p[k] = uint8_t(w[k / 4] >> (8 * (k % 4)));
      }
    }
  }
}

// A thread decodes 8 consecutive values of a row: one 8- or 16-byte load of the record (device
// or mapped host memory) and one 16-byte store of an aligned bf16 output row when they allow.
__global__ void elementwise_decode_kernel(bool fp8, ConstRecordMap in, RowSelect sel, size_t n,
                                          DestRows dst) {
  const uint32_t per_row = uint32_t((dst.dim + 7) / 8);
  const size_t chunks = n * per_row;
  const int bytes = fp8 ? 8 : 16;  // record bytes of 8 values
  for (size_t t = size_t(blockIdx.x) * blockDim.x + threadIdx.x; t < chunks;
       t += size_t(gridDim.x) * blockDim.x) {
    const size_t i = div_index(t, per_row), j = (t - i * per_row) * 8;
    const uint8_t* p = in.at(sel(i)) + (fp8 ? j : 2 * j);
    uint32_t w[4] = {0, 0, 0, 0};
    if (j + 8 <= dst.dim && reinterpret_cast<uintptr_t>(p) % bytes == 0) {
      if (fp8) {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
        w[0] = u.x, w[1] = u.y;
      } else {
        const uint4 u = *reinterpret_cast<const uint4*>(p);
        w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
      }
    } else {
      const int valid = int(dst.dim - j < 8 ? dst.dim - j : 8) * (bytes / 8);
      for (int b = 0; b < valid; ++b) w[b / 4] |= uint32_t(p[b]) << (8 * (b % 4));
    }
    float v[8];
#pragma unroll
    for (int k = 0; k < 8; ++k)
      v[k] = fp8 ? e4m3_to_float(uint8_t(w[k / 4] >> (8 * (k % 4))))
                 : bf16_to_float(uint16_t(w[k / 2] >> (16 * (k % 2))));
    dst.row(i).store<8>(j, dst.dim, v);
  }
}

}  // namespace

void elementwise_encode(bool fp8, const SourceRows& src, size_t n, const RecordMap& out,
                        cudaStream_t stream) {
  if (n == 0 || src.dim == 0) return;
  const size_t chunks = n * ((src.dim + 7) / 8);
  const int blocks =
      resident_blocks(elementwise_encode_kernel, kThreads, 0, (chunks + kThreads - 1) / kThreads);
  elementwise_encode_kernel<<<blocks, kThreads, 0, stream>>>(fp8, src, n, out);
  KVO_CUDA_CHECK(cudaGetLastError());
}

void elementwise_decode(bool fp8, const ConstRecordMap& in, const RowSelect& sel, size_t n,
                        const DestRows& dst, cudaStream_t stream) {
  if (n == 0 || dst.dim == 0) return;
  const size_t chunks = n * ((dst.dim + 7) / 8);
  const int blocks =
      resident_blocks(elementwise_decode_kernel, kThreads, 0, (chunks + kThreads - 1) / kThreads);
  elementwise_decode_kernel<<<blocks, kThreads, 0, stream>>>(fp8, in, sel, n, dst);
  KVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kvo::quant::cuda
