// Uniform k-bit quantizer on CUDA (layout in uniform.h), same bytes as the CPU: the group
// minimum/maximum are exact whatever the order, and codes/values come from scalar_codecs.h.
#include <algorithm>
#include <type_traits>

#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"

namespace kvo::quant::cuda {
namespace {

struct UniformShape {
  int bits, group, G;
  size_t codes_bytes;
};

// Groups of 8 * L values, L a power of two up to 32 (groups of 8 .. 256): a thread takes 8
// consecutive values of a row (one 16-byte load of an aligned bf16 row) and the L threads of a
// group, neighbouring lanes, find its minimum and maximum by shuffles; each thread then writes
// the `bits` bytes that hold its 8 codes (8 values x bits bits never share a byte with another
// thread's). Rows are padded to whole groups of threads, so a group never spans two warps.
// The loops over a thread's 8 values are unrolled, so the values stay in registers.
template <int L>
__global__ void uniform_encode_lanes_kernel(SourceRows src, size_t n, UniformShape S,
                                            RecordMap out) {
  const uint32_t per_row = uint32_t(S.G) * L, qmax = (1u << S.bits) - 1;
  const size_t threads = n * per_row;  // a multiple of L, and L divides 32
  const int lane = threadIdx.x % 32;
  for (size_t t0 = size_t(blockIdx.x) * blockDim.x + threadIdx.x - lane; t0 < threads;
       t0 += size_t(gridDim.x) * blockDim.x) {
    const size_t t = t0 + lane;
    const bool live = t < threads;
    const size_t i = live ? div_index(t, per_row) : 0;
    const uint32_t c = uint32_t(t - i * per_row);  // chunk of the row
    const size_t j = size_t(c) * 8;
    float v[8];
    if (live) src.row(i).load<8>(j, src.dim, v);
    const int count = live && j < src.dim ? int(src.dim - j < 8 ? src.dim - j : 8) : 0;
    float lo = INFINITY, hi = -INFINITY;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      if (k < count) {
        lo = v[k] < lo ? v[k] : lo;  // std::min / std::max, as on the CPU
        hi = hi < v[k] ? v[k] : hi;
      }
    }
#pragma unroll
    for (int off = L / 2; off > 0; off /= 2) {
      const float olo = __shfl_xor_sync(0xffffffffu, lo, off),
                  ohi = __shfl_xor_sync(0xffffffffu, hi, off);
      lo = olo < lo ? olo : lo;
      hi = hi < ohi ? ohi : hi;
    }
    if (count == 0) continue;
    const float step = (hi - lo) / float(qmax), inv = 1.0f / step;
    uint8_t* rec = out.at(i);
    if (c % L == 0)
      store_bytes(rec + S.codes_bytes + 8 * size_t(c / L),
                  __float_as_uint(lo) | uint64_t(__float_as_uint(step)) << 32, 8);
    uint64_t word = 0;  // the 8 codes, value k at bit k * bits
#pragma unroll
    for (int k = 0; k < 8; ++k)
      if (k < count) word |= uint64_t(uniform_code(v[k], lo, step, inv, qmax)) << (k * S.bits);
    const size_t first = size_t(c) * S.bits;  // byte of the row's codes
    store_bytes(rec + first, word, int(min(size_t(S.bits), S.codes_bytes - first)));
    // The last chunk of a row also zeroes the padding up to the 4-byte multiple.
    if (j + 8 >= src.dim)
      for (size_t b = first + S.bits; b < S.codes_bytes; ++b) rec[b] = 0;
  }
}

// Any other group size: a block takes V vectors at a time (V * dim ~ a few thousand values, so
// that small vectors keep its threads busy): group parameters, then one code per value (shared
// memory), then the bit streams assembled one 32-bit word per thread.
__global__ void uniform_encode_kernel(SourceRows src, size_t n, UniformShape S, int V,
                                      RecordMap out) {
  extern __shared__ float params[];  // [V][G][3]: lo, step, 1 / step; then [V][dim] codes as bytes
  uint8_t* codes = reinterpret_cast<uint8_t*>(params + 3 * V * S.G);
  const uint32_t qmax = (1u << S.bits) - 1, dim = uint32_t(src.dim), G = uint32_t(S.G),
                 words = uint32_t(S.codes_bytes / 4);
  for (size_t i0 = size_t(blockIdx.x) * V; i0 < n; i0 += size_t(gridDim.x) * V) {
    const uint32_t rows = uint32_t(min(size_t(V), n - i0));
    for (uint32_t t = threadIdx.x; t < rows * G; t += blockDim.x) {
      const uint32_t r = t / G, g = t - r * G;
      const SourceRow row = src.row(i0 + r);
      const uint32_t b = g * S.group, e = min(dim, b + S.group);
      float lo = row.at(b), hi = lo;
      for (uint32_t j = b; j < e; ++j) {
        const float v = row.at(j);
        lo = v < lo ? v : lo;  // std::min / std::max, as on the CPU
        hi = hi < v ? v : hi;
      }
      const float step = (hi - lo) / float(qmax);
      params[3 * t] = lo;
      params[3 * t + 1] = step;
      params[3 * t + 2] = 1.0f / step;
      store_bytes(out.at(i0 + r) + S.codes_bytes + 8 * size_t(g),
                  __float_as_uint(lo) | uint64_t(__float_as_uint(step)) << 32, 8);
    }
    __syncthreads();
    for (uint32_t t = threadIdx.x; t < rows * dim; t += blockDim.x) {
      const uint32_t r = t / dim, j = t - r * dim;
      const float* p = params + 3 * (r * G + j / S.group);
      codes[t] = uint8_t(uniform_code(src.row(i0 + r).at(j), p[0], p[1], p[2], qmax));
    }
    __syncthreads();
    // Word w holds bits [32w, 32w + 32): the values j with j*bits in (32w - bits, 32w + 32).
    for (uint32_t t = threadIdx.x; t < rows * words; t += blockDim.x) {
      const uint32_t r = t / words, w = t - r * words;
      const uint8_t* c = codes + size_t(r) * dim;
      uint32_t word = 0;
      const uint32_t first = (32 * w) / S.bits, last = (32 * w + 31) / S.bits;
      for (uint32_t j = first; j <= last && j < dim; ++j) {
        const int shift = int(j * S.bits) - int(32 * w);
        word |= shift >= 0 ? uint32_t(c[j]) << shift : uint32_t(c[j]) >> -shift;
      }
      store_bytes(out.at(i0 + r) + 4 * size_t(w), word, 4);
    }
    __syncthreads();
  }
}

// A thread decodes 8 consecutive values j..j+7 of a row: their codes are the `bits` bytes from
// byte j / 8 * bits of the record, read once, and with groups of a multiple of 8 values they
// share one (lo, step); one 16-byte store of an aligned bf16 output row.
__global__ void uniform_decode_kernel(ConstRecordMap in, RowSelect sel, size_t n, UniformShape S,
                                      DestRows dst) {
  const uint32_t per_row = uint32_t((dst.dim + 7) / 8), qmax = (1u << S.bits) - 1;
  const size_t chunks = n * per_row;
  for (size_t t = size_t(blockIdx.x) * blockDim.x + threadIdx.x; t < chunks;
       t += size_t(gridDim.x) * blockDim.x) {
    const size_t i = div_index(t, per_row), j = (t - i * per_row) * 8;
    const uint8_t* rec = in.at(sel(i));
    const size_t first = j / 8 * size_t(S.bits);
    uint64_t word = 0;  // value j + k's code at bit k * bits
    for (int b = 0; b < S.bits && first + b < S.codes_bytes; ++b)
      word |= uint64_t(rec[first + b]) << (8 * b);
    const uint8_t* params = rec + S.codes_bytes + 8 * (j / S.group);
    float lo = load_f32(params), step = load_f32(params + 4);
    float v[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      if (S.group % 8 != 0 && k > 0 && (j + k) % S.group == 0 && j + k < dst.dim) {
        params += 8;
        lo = load_f32(params);
        step = load_f32(params + 4);
      }
      v[k] = uniform_value(uint32_t(word >> (k * S.bits)) & qmax, lo, step);
    }
    dst.row(i).store<8>(j, dst.dim, v);
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
  const auto lanes = [&](auto lc) {
    constexpr int L = decltype(lc)::value;
    auto* kernel = uniform_encode_lanes_kernel<L>;
    const size_t threads = n * size_t(S.G) * L;
    const int blocks = resident_blocks(kernel, 256, 0, (threads + 255) / 256);
    kernel<<<blocks, 256, 0, stream>>>(src, n, S, out);
    KVO_CUDA_CHECK(cudaGetLastError());
  };
  switch (S.group) {
    case 8:
      return lanes(std::integral_constant<int, 1>{});
    case 16:
      return lanes(std::integral_constant<int, 2>{});
    case 32:
      return lanes(std::integral_constant<int, 4>{});
    case 64:
      return lanes(std::integral_constant<int, 8>{});
    case 128:
      return lanes(std::integral_constant<int, 16>{});
    case 256:
      return lanes(std::integral_constant<int, 32>{});
  }
  constexpr int threads = 256;
  const int V = int(std::max<size_t>(1, std::min<size_t>(n, 4096 / src.dim)));
  const size_t smem = size_t(V) * (12 * size_t(S.G) + src.dim);
  const int blocks = resident_blocks(uniform_encode_kernel, threads, smem, (n + V - 1) / V);
  uniform_encode_kernel<<<blocks, threads, smem, stream>>>(src, n, S, V, out);
  KVO_CUDA_CHECK(cudaGetLastError());
}

void uniform_decode(const UniformQuantizer& q, const ConstRecordMap& in, const RowSelect& sel,
                    size_t n, const DestRows& dst, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int threads = 256;
  const size_t chunks = n * ((dst.dim + 7) / 8);
  const int blocks =
      resident_blocks(uniform_decode_kernel, threads, 0, (chunks + threads - 1) / threads);
  uniform_decode_kernel<<<blocks, threads, 0, stream>>>(in, sel, n, shape_of(q, dst.dim), dst);
  KVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kvo::quant::cuda
