// Element-wise and row-wise kernels of the CUDA backend; contracts in kernels.h.
#include <cuda_fp16.h>

#include <algorithm>

#include "backend/cuda/check.h"
#include "backend/cuda/device_math.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/overlap.h"
#include "backend/cuda/rope.cuh"

namespace kvo::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(b, 1), 1 << 20));
}

__global__ void convert_kernel(const void* src, int src_dtype, bf16* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v;
    if (src_dtype == 0)
      v = static_cast<const float*>(src)[i];
    else if (src_dtype == 1)
      v = __half2float(static_cast<const __half*>(src)[i]);
    else {
      dst[i] = static_cast<const bf16*>(src)[i];
      continue;
    }
    dst[i] = __float2bfloat16_rn(v);
  }
}

// One block per token; 16-byte copies when everything is 16-byte aligned.
__global__ void embedding_kernel(const int32_t* ids, const bf16* table, int64_t ts, int64_t cols,
                                 bf16* out, int64_t os, bool vec) {
  allow_successor();
  wait_for_predecessor();
  const int64_t t = blockIdx.x;
  const bf16* src = table + int64_t(ids[t]) * ts;
  bf16* dst = out + t * os;
  if (vec) {
    const int64_t n = cols / 8;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
      reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(src)[i];
  } else {
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dst[i] = src[i];
  }
}

// One warp per row; pass 1 sums squares in fp32, pass 2 rescales (same lane, same elements, so
// out may alias x).
template <bool kVec>
__global__ void rmsnorm_kernel(const bf16* x, int64_t xs, const bf16* w, float eps, bf16* out,
                               int64_t os, int64_t rows, int64_t cols) {
  allow_successor();
  wait_for_predecessor();
  const int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const bf16* xr = x + r * xs;
  bf16* yr = out + r * os;
  float sum = 0.0f;
  if constexpr (kVec) {
    for (int64_t i = lane; i < cols / 8; i += 32) {
      uint4 u = reinterpret_cast<const uint4*>(xr)[i];
      const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float2 f = __bfloat1622float2(p[j]);
        sum += f.x * f.x + f.y * f.y;
      }
    }
  } else {
    for (int64_t i = lane; i < cols; i += 32) {
      float f = __bfloat162float(xr[i]);
      sum += f * f;
    }
  }
  sum = warp_sum(sum);
  const float inv = rsqrtf(sum / float(cols) + eps);
  if constexpr (kVec) {
    for (int64_t i = lane; i < cols / 8; i += 32) {
      uint4 u = reinterpret_cast<const uint4*>(xr)[i];
      uint4 wv = reinterpret_cast<const uint4*>(w)[i];
      __nv_bfloat162* p = reinterpret_cast<__nv_bfloat162*>(&u);
      const __nv_bfloat162* q = reinterpret_cast<const __nv_bfloat162*>(&wv);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float2 f = __bfloat1622float2(p[j]), g = __bfloat1622float2(q[j]);
        p[j] = __floats2bfloat162_rn(f.x * inv * g.x, f.y * inv * g.y);
      }
      reinterpret_cast<uint4*>(yr)[i] = u;
    }
  } else {
    for (int64_t i = lane; i < cols; i += 32)
      yr[i] = __float2bfloat16_rn(__bfloat162float(xr[i]) * inv * __bfloat162float(w[i]));
  }
}

struct RopeStoreArgs {
  bf16* q;  // rotated in place
  int64_t qs, q_heads;
  const bf16* k;  // rotated into keys; kv_heads == 0: plain RoPE of q
  int64_t ks;
  const bf16* v;  // copied into values
  int64_t vs, kv_heads;
  bf16* keys;
  int64_t keys_s;
  bf16* values;
  int64_t values_s, rows;
  int head_dim;
  const int32_t* positions;
  const float* inv_freq;
  bool adjacent;
  SeqTables seqs;  // count > 0: row r's keys and values go to seqs.keys[r] / seqs.values[r]
};

// One thread per (row, head, pair), the heads of q first, then those of k with v's same pair.
__global__ void rope_store_kernel(const __grid_constant__ RopeStoreArgs a) {
  allow_successor();
  wait_for_predecessor();
  const int half = a.head_dim / 2;
  const int64_t heads = a.q_heads + a.kv_heads;
  const int64_t n = a.rows * heads * half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(idx % half);
    const int64_t rh = idx / half;
    const int64_t h = rh % heads, r = rh / heads;
    const int64_t pos = a.positions[r];
    const bf16* src;
    bf16* dst;
    if (h < a.q_heads) {
      src = dst = a.q + r * a.qs + h * a.head_dim;
    } else {
      const int64_t kh = h - a.q_heads;
      bf16* keys = a.seqs.count ? a.seqs.keys[r] : a.keys;
      bf16* values = a.seqs.count ? a.seqs.values[r] : a.values;
      src = a.k + r * a.ks + kh * a.head_dim;
      dst = keys + pos * a.keys_s + kh * a.head_dim;
      const bf16* vr = a.v + r * a.vs + kh * a.head_dim;
      bf16* vd = values + pos * a.values_s + kh * a.head_dim;
      int ea, eb;
      rope_pair_elements(i, a.head_dim, a.adjacent, ea, eb);
      vd[ea] = vr[ea];
      vd[eb] = vr[eb];
    }
    rope_pair(src, dst, i, a.head_dim, rope_angle(i, pos, a.inv_freq), a.adjacent);
  }
}

void launch_rope_store(const RopeStoreArgs& a, cudaStream_t stream) {
  const int64_t n = a.rows * (a.q_heads + a.kv_heads) * (a.head_dim / 2);
  if (n == 0) return;
  launch_overlapped("rope_store_kernel", rope_store_kernel, blocks_for(n), kThreads, 0, stream, a);
}

// Generic 2-D element-wise loop over pairs (kPair) or single elements.
template <bool kPair, typename F>
__global__ void map2d_kernel(int64_t rows, int64_t cols, F f) {
  allow_successor();
  wait_for_predecessor();
  const int64_t per_row = kPair ? cols / 2 : cols;
  const int64_t n = rows * per_row;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / per_row, c = (idx % per_row) * (kPair ? 2 : 1);
    f.template apply<kPair>(r, c);
  }
}

template <typename F>
void launch_map2d(bool pair, int64_t rows, int64_t cols, F f, cudaStream_t stream) {
  const int64_t n = rows * (pair ? cols / 2 : cols);
  if (n == 0) return;
  if (pair)
    launch_overlapped("map2d_kernel", map2d_kernel<true, F>, blocks_for(n), kThreads, 0, stream,
                      rows, cols, f);
  else
    launch_overlapped("map2d_kernel", map2d_kernel<false, F>, blocks_for(n), kThreads, 0, stream,
                      rows, cols, f);
}

// Functors for map2d_kernel: operator()<kPair>(r, c) handles element c (and c + 1 if kPair).
struct SwigluOp {
  const bf16* gate;
  int64_t gs;
  const bf16* up;
  int64_t us;
  bf16* out;
  int64_t os;
  template <bool kPair>
  __device__ void apply(int64_t r, int64_t c) const {
    if constexpr (kPair) {
      const float2 g =
          __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(gate + r * gs + c));
      const float2 u =
          __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(up + r * us + c));
      *reinterpret_cast<__nv_bfloat162*>(out + r * os + c) =
          __floats2bfloat162_rn(silu(g.x) * u.x, silu(g.y) * u.y);
    } else {
      out[r * os + c] = __float2bfloat16_rn(silu(__bfloat162float(gate[r * gs + c])) *
                                            __bfloat162float(up[r * us + c]));
    }
  }
};

struct AddOp {
  bf16* x;
  int64_t xs;
  const bf16* y;
  int64_t ys;
  template <bool kPair>
  __device__ void apply(int64_t r, int64_t c) const {
    if constexpr (kPair) {
      __nv_bfloat162* a = reinterpret_cast<__nv_bfloat162*>(x + r * xs + c);
      const float2 fa = __bfloat1622float2(*a);
      const float2 fb =
          __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(y + r * ys + c));
      *a = __floats2bfloat162_rn(fa.x + fb.x, fa.y + fb.y);
    } else {
      x[r * xs + c] =
          __float2bfloat16_rn(__bfloat162float(x[r * xs + c]) + __bfloat162float(y[r * ys + c]));
    }
  }
};

struct BroadcastOp {
  const bf16* bias;
  bf16* out;
  int64_t os;
  template <bool kPair>
  __device__ void apply(int64_t r, int64_t c) const {
    out[r * os + c] = bias[c];
  }
};

// One block per row.
__global__ void copy_rows_at_kernel(const bf16* src, int64_t ss, bf16* dst, int64_t ds,
                                    int64_t cols, const int32_t* first) {
  allow_successor();
  wait_for_predecessor();
  const int64_t r = blockIdx.x;
  const bf16* s = src + r * ss;
  bf16* d = dst + (int64_t(*first) + r) * ds;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) d[i] = s[i];
}

__global__ void read_sum_kernel(const uint4* data, int64_t n, uint32_t* out) {
  uint32_t acc = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint4 v = data[i];
    acc ^= v.x + v.y + v.z + v.w;
  }
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  if (threadIdx.x % 32 == 0) atomicXor(out + blockIdx.x, acc);
}

}  // namespace

void copy_rows_at(const bf16* src, int64_t ss, bf16* dst, int64_t ds, int64_t rows, int64_t cols,
                  const int32_t* first, cudaStream_t stream) {
  if (rows == 0) return;
  launch_overlapped("copy_rows_at_kernel", copy_rows_at_kernel, static_cast<unsigned>(rows), 256, 0,
                    stream, src, ss, dst, ds, cols, first);
}

void read_sum(const void* data, int64_t bytes, unsigned blocks, uint32_t* out,
              cudaStream_t stream) {
  read_sum_kernel<<<blocks, 512, 0, stream>>>(static_cast<const uint4*>(data), bytes / 16, out);
  KVO_CUDA_LAUNCHED("read_sum_kernel");
}

void convert_to_bf16(const void* src, int src_dtype, bf16* dst, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, src_dtype, dst, n);
  KVO_CUDA_LAUNCHED("convert_kernel");
}

void embedding(const int32_t* ids, int64_t n, const bf16* table, int64_t ts, int64_t cols,
               bf16* out, int64_t os, cudaStream_t stream) {
  if (n == 0) return;
  const bool vec =
      cols % 8 == 0 && ts % 8 == 0 && os % 8 == 0 && aligned(table, 16) && aligned(out, 16);
  launch_overlapped("embedding_kernel", embedding_kernel, static_cast<unsigned>(n), 128, 0, stream,
                    ids, table, ts, cols, out, os, vec);
}

void rmsnorm(const bf16* x, int64_t xs, const bf16* w, float eps, bf16* out, int64_t os,
             int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0) return;
  const int warps = 8;
  const unsigned blocks = static_cast<unsigned>((rows + warps - 1) / warps);
  const bool vec = cols % 8 == 0 && xs % 8 == 0 && os % 8 == 0 && aligned(x, 16) &&
                   aligned(out, 16) && aligned(w, 16);
  launch_overlapped("rmsnorm_kernel", vec ? rmsnorm_kernel<true> : rmsnorm_kernel<false>, blocks,
                    warps * 32, 0, stream, x, xs, w, eps, out, os, rows, cols);
}

void rope(bf16* x, int64_t xs, int64_t rows, int64_t heads, int head_dim, const int32_t* positions,
          const float* inv_freq, bool adjacent_pairs, cudaStream_t stream) {
  launch_rope_store({x, xs, heads, nullptr, 0, nullptr, 0, 0, nullptr, 0, nullptr, 0, rows,
                     head_dim, positions, inv_freq, adjacent_pairs},
                    stream);
}

void rope_store(bf16* q, int64_t qs, int64_t q_heads, const bf16* k, int64_t ks, const bf16* v,
                int64_t vs, int64_t kv_heads, bf16* keys, int64_t keys_s, bf16* values,
                int64_t values_s, int64_t rows, int head_dim, const int32_t* positions,
                const float* inv_freq, bool adjacent_pairs, cudaStream_t stream,
                const SeqTables* seqs) {
  RopeStoreArgs a{q,         qs,       q_heads,       k,      ks,       v,    vs,
                  kv_heads,  keys,     keys_s,        values, values_s, rows, head_dim,
                  positions, inv_freq, adjacent_pairs};
  if (seqs) a.seqs = *seqs;
  launch_rope_store(a, stream);
}

void swiglu(const bf16* gate, int64_t gs, const bf16* up, int64_t us, bf16* out, int64_t os,
            int64_t rows, int64_t cols, cudaStream_t stream) {
  const bool pair = cols % 2 == 0 && gs % 2 == 0 && us % 2 == 0 && os % 2 == 0 &&
                    aligned(gate, 4) && aligned(up, 4) && aligned(out, 4);
  launch_map2d(pair, rows, cols, SwigluOp{gate, gs, up, us, out, os}, stream);
}

void add(bf16* x, int64_t xs, const bf16* y, int64_t ys, int64_t rows, int64_t cols,
         cudaStream_t stream) {
  const bool pair = cols % 2 == 0 && xs % 2 == 0 && ys % 2 == 0 && aligned(x, 4) && aligned(y, 4);
  launch_map2d(pair, rows, cols, AddOp{x, xs, y, ys}, stream);
}

void broadcast_rows(const bf16* bias, bf16* out, int64_t os, int64_t rows, int64_t cols,
                    cudaStream_t stream) {
  launch_map2d(false, rows, cols, BroadcastOp{bias, out, os}, stream);
}

}  // namespace kvo::cuda
