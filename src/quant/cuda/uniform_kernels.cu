// Uniform k-bit quantizer on CUDA (layout in uniform.h), same bytes as the CPU: the group
// minimum/maximum are exact whatever the order, and codes/values come from scalar_codecs.h.
#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"

namespace kvo::quant::cuda {
namespace {

struct UniformShape {
  int bits, group, G;
  size_t codes_bytes;
};

// One block per vector: group parameters, then one code per value (shared memory), then the
// bit stream assembled one 32-bit word per thread.
__global__ void uniform_encode_kernel(SourceRows src, size_t n, UniformShape S, RecordMap out) {
  extern __shared__ float params[];  // [G][2]: lo, step; then dim codes as bytes
  uint8_t* codes = reinterpret_cast<uint8_t*>(params + 2 * S.G);
  const uint32_t qmax = (1u << S.bits) - 1;
  for (size_t i = blockIdx.x; i < n; i += gridDim.x) {
    uint8_t* rec = out.at(i);
    const SourceRow row = src.row(i);
    for (int g = threadIdx.x; g < S.G; g += blockDim.x) {
      const size_t b = size_t(g) * S.group, e = min(src.dim, b + S.group);
      float lo = row.at(b), hi = lo;
      for (size_t j = b; j < e; ++j) {
        const float v = row.at(j);
        lo = v < lo ? v : lo;  // std::min / std::max, as on the CPU
        hi = hi < v ? v : hi;
      }
      const float step = (hi - lo) / float(qmax);
      params[2 * g] = lo;
      params[2 * g + 1] = step;
      store_f32(rec + S.codes_bytes + 8 * size_t(g), lo);
      store_f32(rec + S.codes_bytes + 8 * size_t(g) + 4, step);
    }
    __syncthreads();
    for (size_t j = threadIdx.x; j < src.dim; j += blockDim.x) {
      const size_t g = j / S.group;
      codes[j] = uint8_t(uniform_code(row.at(j), params[2 * g], params[2 * g + 1], qmax));
    }
    __syncthreads();
    // Word w holds bits [32w, 32w + 32): the values j with j*bits in (32w - bits, 32w + 32).
    for (size_t w = threadIdx.x; w < S.codes_bytes / 4; w += blockDim.x) {
      uint32_t word = 0;
      const size_t first = (32 * w) / S.bits, last = (32 * w + 31) / S.bits;
      for (size_t j = first; j <= last && j < src.dim; ++j) {
        const long long shift = (long long)(j * S.bits) - (long long)(32 * w);
        word |= shift >= 0 ? uint32_t(codes[j]) << shift : uint32_t(codes[j]) >> -shift;
      }
      for (int b = 0; b < 4; ++b) rec[4 * w + b] = uint8_t(word >> (8 * b));
    }
    __syncthreads();
  }
}

// One warp per row, lanes along the row.
__global__ void uniform_decode_kernel(ConstRecordMap in, RowSelect sel, size_t n, UniformShape S,
                                      DestRows dst) {
  const int lane = threadIdx.x % 32;
  for (size_t i = grid_warp(); i < n; i += grid_warps()) {
    const uint8_t* rec = in.at(sel(i));
    const DestRow out = dst.row(i);
    for (size_t j = lane; j < dst.dim; j += 32) {
      uint32_t q = 0;
      for (int k = 0; k < S.bits; ++k) {
        const size_t bit = j * S.bits + k;
        q |= uint32_t((rec[bit / 8] >> (bit % 8)) & 1u) << k;
      }
      const uint8_t* p = rec + S.codes_bytes + 8 * (j / S.group);
      out.store(j, uniform_value(q, load_f32(p), load_f32(p + 4)));
    }
  }
}

UniformShape shape_of(const UniformQuantizer& q, size_t dim) {
  return {q.bits(), q.group(), int((dim + q.group() - 1) / q.group()), q.codes_bytes(dim)};
}

}  // namespace

void uniform_encode(const UniformQuantizer& q, const SourceRows& src, size_t n,
                    const RecordMap& out, cudaStream_t stream) {
  if (n == 0) return;
  const UniformShape S = shape_of(q, src.dim);
  constexpr int threads = 128;
  const size_t smem = 8 * size_t(S.G) + src.dim;
  const int blocks = resident_blocks(uniform_encode_kernel, threads, smem, n);
  uniform_encode_kernel<<<blocks, threads, smem, stream>>>(src, n, S, out);
  KVO_CUDA_CHECK(cudaGetLastError());
}

void uniform_decode(const UniformQuantizer& q, const ConstRecordMap& in, const RowSelect& sel,
                    size_t n, const DestRows& dst, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int threads = 256;
  const int blocks = resident_blocks(uniform_decode_kernel, threads, 0, (n + 7) / 8);
  uniform_decode_kernel<<<blocks, threads, 0, stream>>>(in, sel, n, shape_of(q, dst.dim), dst);
  KVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kvo::quant::cuda
