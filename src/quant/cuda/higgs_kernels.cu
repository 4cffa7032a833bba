// HIGGS on CUDA: encode (Hadamard + nearest EDEN point), rotated-domain scoring, bf16 decode,
// and the benchmark that times them against a plain read kernel. CPU reference: higgs.cpp.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <vector>

#include "quant/cuda/higgs_cuda.h"
#include "quant/device.h"

namespace kvo::quant::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;

#define KVO_CUDA_CHECK(expr)                                                    \
  do {                                                                          \
    const cudaError_t err_ = (expr);                                            \
    if (err_ != cudaSuccess) throw_cuda_error(#expr, cudaGetErrorString(err_)); \
  } while (0)

// Everything a kernel needs to address records (see higgs.h for the layout).
struct Layout {
  int h, p, npts, T, G, cb;  // group, tuple dim, grid points, tuples/group, groups, code bytes
  size_t dim, rec, codes_bytes;
};

Layout layout_of(const HiggsQuantizer& q, size_t dim) {
  return {q.group(),          q.p(),          q.n_points(), q.tuples(),
          int(q.groups(dim)), q.code_bytes(), dim,          q.bytes_per_vector(dim),
          q.codes_bytes(dim)};
}

// Device copy of each grid, [npts * p] points then [npts] half norms, uploaded once.
const float* device_grid(const EdenGrid& g) {
  static std::mutex mu;
  static std::map<const EdenGrid*, float*> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(&g);
  if (it != cache.end()) return it->second;
  float* d = nullptr;
  std::vector<float> host(g.points);
  host.insert(host.end(), g.half_norms.begin(), g.half_norms.end());
  KVO_CUDA_CHECK(cudaMalloc(&d, host.size() * sizeof(float)));
  KVO_CUDA_CHECK(cudaMemcpy(d, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  cache[&g] = d;
  return d;
}

int sm_count() {
  int dev = 0, sms = 0;
  KVO_CUDA_CHECK(cudaGetDevice(&dev));
  KVO_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return sms;
}

// Persistent-style launch size: as many blocks as fit at once (capped by the work).
template <typename Kernel>
int grid_blocks(Kernel k, int threads, size_t smem, size_t work_blocks) {
  if (smem > 48 * 1024)
    KVO_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  int per_sm = 0;
  KVO_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, threads, smem));
  if (per_sm == 0) throw_cuda_error("launch", "kernel does not fit in shared memory");
  return int(std::max<size_t>(1, std::min<size_t>(work_blocks, size_t(per_sm) * sm_count())));
}

__device__ __forceinline__ float warp_sum_xor(float v) {
  for (int off = 16; off >= 1; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

// Unnormalized Walsh-Hadamard transform of h = 32*E values spread over a warp (lane holds
// elements lane*E .. lane*E+E): strides < E are in-lane butterflies, strides >= E lane-xor
// shuffles, in ascending stride order as on the CPU so both sides round identically.
template <int E>
__device__ __forceinline__ void warp_hadamard(float (&v)[E], int lane) {
#pragma unroll
  for (int st = 1; st < E; st <<= 1)
#pragma unroll
    for (int k = 0; k < E; ++k)
      if (!(k & st)) {
        const float a = v[k], b = v[k + st];
        v[k] = a + b;
        v[k + st] = a - b;
      }
#pragma unroll
  for (int m = 1; m < 32; m <<= 1)
#pragma unroll
    for (int k = 0; k < E; ++k) {
      const float o = __shfl_xor_sync(kFull, v[k], m);
      v[k] = (lane & m) ? o - v[k] : v[k] + o;
    }
}

// One group of h = 32*E values in registers: lane holds x[lane*E .. lane*E+E). Strides < E are
// in-lane butterflies, strides >= E are lane-xor shuffles; ascending stride order as on CPU.
// Writes y = Hx / s to y[0..h) and returns s = ||x||.
template <int E>
__device__ float rotate_regs(const float* __restrict__ xv, int valid, float* y, int lane) {
  float v[E];
#pragma unroll
  for (int k = 0; k < E; ++k) {
    const int i = lane * E + k;
    v[k] = i < valid ? xv[i] : 0.0f;
  }
  float acc = 0.0f;
#pragma unroll
  for (int k = 0; k < E; ++k) acc = fmaf(v[k], v[k], acc);
  const float s = sqrtf(warp_sum_xor(acc));
  warp_hadamard<E>(v, lane);
#pragma unroll
  for (int k = 0; k < E; ++k) y[lane * E + k] = s > 0.0f ? v[k] / s : 0.0f;
  return s;
}

// In-place FWHT of y[0..h) in shared memory by one warp (h >= 64).
__device__ void fwht_warp_smem(float* y, int h, int lane) {
  for (int st = 1; st < h; st <<= 1) {
    for (int b = lane; b < h / 2; b += 32) {
      const int j = (b / st) * 2 * st + (b % st);
      const float a = y[j], c = y[j + st];
      y[j] = a + c;
      y[j + st] = a - c;
    }
    __syncwarp();
  }
}

// Groups above 128 values: staged in the warp's shared-memory slice.
__device__ float rotate_smem(const float* __restrict__ xv, int valid, int h, float* y, int lane) {
  for (int i = lane; i < h; i += 32) y[i] = i < valid ? xv[i] : 0.0f;
  __syncwarp();
  const int E = h / 32;
  float acc = 0.0f;
  for (int k = 0; k < E; ++k) {
    const float t = y[lane * E + k];
    acc = fmaf(t, t, acc);
  }
  const float s = sqrtf(warp_sum_xor(acc));
  fwht_warp_smem(y, h, lane);
  for (int i = lane; i < h; i += 32) y[i] = s > 0.0f ? y[i] / s : 0.0f;
  __syncwarp();
  return s;
}

// x: [n, dim] fp32 -> records. One warp per (vector, group). Shared memory: grid [npts, P],
// half norms [npts], then each warp's y slice [T*P] (zero tail when P does not divide h).
// grid_g holds the points followed by the half norms (device_grid).
template <int P>
__global__ void encode_kernel(const float* __restrict__ x, size_t n, Layout L,
                              const float* __restrict__ grid_g, uint8_t* __restrict__ out) {
  extern __shared__ float smem[];
  float* grid = smem;
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int ylen = L.T * P;
  float* hnorm = smem + L.npts * P;
  float* y = hnorm + L.npts + warp * ylen;
  for (int i = threadIdx.x; i < L.npts * P; i += blockDim.x) grid[i] = grid_g[i];
  for (int i = threadIdx.x; i < L.npts; i += blockDim.x) hnorm[i] = grid_g[L.npts * P + i];
  for (int k = L.h + lane; k < ylen; k += 32) y[k] = 0.0f;
  __syncthreads();
  const size_t total = n * size_t(L.G);
  for (size_t gi = size_t(blockIdx.x) * warps + warp; gi < total; gi += size_t(gridDim.x) * warps) {
    const size_t vi = gi / L.G;
    const int g = int(gi % L.G);
    const float* xv = x + vi * L.dim + size_t(g) * L.h;
    const int valid = int(min(size_t(L.h), L.dim - size_t(g) * L.h));
    float s;
    if (L.h == 64)
      s = rotate_regs<2>(xv, valid, y, lane);
    else if (L.h == 128)
      s = rotate_regs<4>(xv, valid, y, lane);
    else
      s = rotate_smem(xv, valid, L.h, y, lane);
    __syncwarp();
    uint8_t* rec = out + vi * L.rec;
    for (int t = lane; t < L.T; t += 32) {
      float yt[P];
#pragma unroll
      for (int j = 0; j < P; ++j) yt[j] = y[t * P + j];
      int best = 0;
      float bd = INFINITY;
#pragma unroll 4
      for (int c = 0; c < L.npts; ++c) {
        const float* pt = grid + c * P;
        float d = hnorm[c];
#pragma unroll
        for (int j = 0; j < P; ++j) d = fmaf(-yt[j], pt[j], d);
        if (d < bd) {
          bd = d;
          best = c;
        }
      }
      const size_t idx = size_t(g) * L.T + t;
      if (L.cb == 1) {
        rec[idx] = uint8_t(best);
      } else {
        rec[2 * idx] = uint8_t(best & 0xff);
        rec[2 * idx + 1] = uint8_t(best >> 8);
      }
    }
    if (lane == 0) {
      *reinterpret_cast<float*>(rec + L.codes_bytes + 4 * size_t(g)) = s;
      if (g == 0)
        for (size_t b = size_t(L.G) * L.T * L.cb; b < L.codes_bytes; ++b) rec[b] = 0;
    }
    __syncwarp();
  }
}

__device__ __forceinline__ uint32_t code_at(const uint32_t* recw, int cb, int idx, uint32_t& w) {
  if (cb == 1) {
    if ((idx & 3) == 0) w = recw[idx >> 2];
    return (w >> ((idx & 3) * 8)) & 0xffu;
  }
  if ((idx & 1) == 0) w = recw[idx >> 1];
  return (w >> ((idx & 1) * 16)) & 0xffffu;
}

// Stages one block's run of records into shared memory. Each thread issues all its 16-byte
// loads before storing any, so a batch costs about one memory latency, not one per word.
__device__ void stage_records(const uint8_t* keys, size_t base, size_t cnt, size_t rec,
                              uint32_t* recs) {
  constexpr int U = 8;
  const size_t bytes = cnt * rec, n16 = bytes / 16;
  const uint4* src4 = reinterpret_cast<const uint4*>(keys + base * rec);  // 16-aligned: rec%4==0,
  uint4* dst4 = reinterpret_cast<uint4*>(recs);                           // base%blockDim==0
  for (size_t i = threadIdx.x; i < n16; i += size_t(U) * blockDim.x) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const size_t k = i + size_t(u) * blockDim.x;
      if (k < n16) v[u] = src4[k];
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const size_t k = i + size_t(u) * blockDim.x;
      if (k < n16) dst4[k] = v[u];
    }
  }
  const uint32_t* src = reinterpret_cast<const uint32_t*>(keys + base * rec);
  for (size_t w = n16 * 4 + threadIdx.x; w < bytes / 4; w += blockDim.x) recs[w] = src[w];
}

// scores[i] = sum_g s_g/h * sum_t lut[g][t][c_gt], lut = [G*T, npts] dot products of grid
// points with the rotated query, built per block in shared memory; one thread per key.
__global__ void score_lut_kernel(const float* __restrict__ qrot, const uint8_t* __restrict__ keys,
                                 size_t n, Layout L, const float* __restrict__ grid_g,
                                 float* __restrict__ scores) {
  extern __shared__ float smem[];
  const int GT = L.G * L.T;
  float* lut = smem;
  uint32_t* recs = reinterpret_cast<uint32_t*>(lut + size_t(GT) * L.npts);
  for (int idx = threadIdx.x; idx < GT * L.npts; idx += blockDim.x) {
    const int c = idx % L.npts, gt = idx / L.npts, g = gt / L.T, t = gt % L.T;
    float acc = 0.0f;
    for (int j = 0; j < L.p; ++j) {
      const int k = t * L.p + j;
      if (k < L.h) acc += grid_g[c * L.p + j] * qrot[g * L.h + k];
    }
    lut[idx] = acc;
  }
  const float inv_h = 1.0f / float(L.h);
  const int words = int(L.rec / 4);
  for (size_t base = size_t(blockIdx.x) * blockDim.x; base < n;
       base += size_t(gridDim.x) * blockDim.x) {
    const size_t cnt = min(size_t(blockDim.x), n - base);
    __syncthreads();
    stage_records(keys, base, cnt, L.rec, recs);
    __syncthreads();
    if (threadIdx.x < cnt) {
      const uint32_t* rw = recs + threadIdx.x * words;
      const float* sc = reinterpret_cast<const float*>(rw + L.codes_bytes / 4);
      float total = 0.0f;
      if (L.cb == 1 && L.T % 4 == 0) {
        // Fast path (uint8 codes, whole words per group): four independent table reads per
        // code word, two accumulators to shorten the dependent add chain.
        const int wpg = L.T / 4;
        for (int g = 0; g < L.G; ++g) {
          const uint32_t* cw = rw + g * wpg;
          const float* l = lut + size_t(g) * L.T * L.npts;
          float a0 = 0.0f, a1 = 0.0f;
#pragma unroll 4
          for (int wi = 0; wi < wpg; ++wi, l += 4 * L.npts) {
            const uint32_t w = cw[wi];
            a0 += l[w & 0xffu];
            a1 += l[L.npts + ((w >> 8) & 0xffu)];
            a0 += l[2 * L.npts + ((w >> 16) & 0xffu)];
            a1 += l[3 * L.npts + (w >> 24)];
          }
          total += (a0 + a1) * sc[g] * inv_h;
        }
      } else {
        uint32_t w = 0;
        for (int g = 0; g < L.G; ++g) {
          float acc = 0.0f;
          for (int t = 0; t < L.T; ++t) {
            const int idx = g * L.T + t;
            acc += lut[size_t(idx) * L.npts + code_at(rw, L.cb, idx, w)];
          }
          total += acc * sc[g] * inv_h;
        }
      }
      scores[base + threadIdx.x] = total;
    }
  }
}

// Fallback when the table does not fit: grid [npts, P] and rotated query [G*h] in shared memory.
template <int P>
__global__ void score_grid_kernel(const float* __restrict__ qrot, const uint8_t* __restrict__ keys,
                                  size_t n, Layout L, const float* __restrict__ grid_g,
                                  float* __restrict__ scores) {
  extern __shared__ float smem[];
  float* grid = smem;
  float* q = grid + L.npts * P;
  const int qlen = L.G * L.T * P;  // zero tail per group is handled by the k < h test
  uint32_t* recs = reinterpret_cast<uint32_t*>(q + qlen);
  for (int i = threadIdx.x; i < L.npts * P; i += blockDim.x) grid[i] = grid_g[i];
  for (int i = threadIdx.x; i < L.G * L.h; i += blockDim.x) q[i] = qrot[i];
  const float inv_h = 1.0f / float(L.h);
  const int words = int(L.rec / 4);
  for (size_t base = size_t(blockIdx.x) * blockDim.x; base < n;
       base += size_t(gridDim.x) * blockDim.x) {
    const size_t cnt = min(size_t(blockDim.x), n - base);
    __syncthreads();
    stage_records(keys, base, cnt, L.rec, recs);
    __syncthreads();
    if (threadIdx.x < cnt) {
      const uint32_t* rw = recs + threadIdx.x * words;
      const float* sc = reinterpret_cast<const float*>(rw + L.codes_bytes / 4);
      uint32_t w = 0;
      float total = 0.0f;
      for (int g = 0; g < L.G; ++g) {
        float acc = 0.0f;
        for (int t = 0; t < L.T; ++t) {
          const float* pt = grid + code_at(rw, L.cb, g * L.T + t, w) * P;
#pragma unroll
          for (int j = 0; j < P; ++j) {
            const int k = t * P + j;
            if (k < L.h) acc += pt[j] * q[g * L.h + k];
          }
        }
        total += acc * sc[g] * inv_h;
      }
      scores[base + threadIdx.x] = total;
    }
  }
}

// Code of value k of group g: tuple k / p of the record.
__device__ __forceinline__ uint32_t code_of(const uint8_t* rec, const Layout& L, int g, int t) {
  const size_t idx = size_t(g) * L.T + t;
  return L.cb == 1 ? rec[idx] : (uint32_t(rec[2 * idx]) | (uint32_t(rec[2 * idx + 1]) << 8));
}

// Groups of 32*E values: lane holds z[lane*E .. +E) = grid value * s, then the same
// register/shuffle butterflies as rotate_regs; no shared memory.
template <int E>
__device__ void decode_regs(const uint8_t* rec, const Layout& L, int g, float s,
                            const float* __restrict__ grid_g, __nv_bfloat16* out, int valid,
                            int lane) {
  float v[E];
#pragma unroll
  for (int k = 0; k < E; ++k) {
    const int i = lane * E + k, t = i / L.p;
    v[k] = grid_g[code_of(rec, L, g, t) * L.p + (i - t * L.p)] * s;
  }
  warp_hadamard<E>(v, lane);
  const float inv_h = 1.0f / float(L.h);
#pragma unroll
  for (int k = 0; k < E; ++k)
    if (lane * E + k < valid) out[lane * E + k] = __float2bfloat16_rn(v[k] * inv_h);
}

// records -> [n, dim] bf16. One warp per (vector, group); groups above 128 values use the
// warp's shared-memory slice of h floats.
__global__ void decode_bf16_kernel(const uint8_t* __restrict__ keys, size_t n, Layout L,
                                   const float* __restrict__ grid_g,
                                   __nv_bfloat16* __restrict__ out) {
  extern __shared__ float smem[];
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* y = smem + warp * L.h;
  const float inv_h = 1.0f / float(L.h);
  const size_t total = n * size_t(L.G);
  for (size_t gi = size_t(blockIdx.x) * warps + warp; gi < total; gi += size_t(gridDim.x) * warps) {
    const size_t vi = gi / L.G;
    const int g = int(gi % L.G);
    const uint8_t* rec = keys + vi * L.rec;
    const float s = *reinterpret_cast<const float*>(rec + L.codes_bytes + 4 * size_t(g));
    const int valid = int(min(size_t(L.h), L.dim - size_t(g) * L.h));
    __nv_bfloat16* o = out + vi * L.dim + size_t(g) * L.h;
    if (L.h == 64) {
      decode_regs<2>(rec, L, g, s, grid_g, o, valid, lane);
      continue;
    }
    if (L.h == 128) {
      decode_regs<4>(rec, L, g, s, grid_g, o, valid, lane);
      continue;
    }
    for (int t = lane; t < L.T; t += 32) {
      const uint32_t c = code_of(rec, L, g, t);
      for (int j = 0; j < L.p; ++j) {
        const int k = t * L.p + j;
        if (k < L.h) y[k] = grid_g[c * L.p + j] * s;
      }
    }
    __syncwarp();
    fwht_warp_smem(y, L.h, lane);
    for (int k = lane; k < valid; k += 32) o[k] = __float2bfloat16_rn(y[k] * inv_h);
    __syncwarp();
  }
}

__global__ void read_kernel(const float4* __restrict__ p, size_t n4, float* out) {
  float acc = 0.0f;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
       i += size_t(gridDim.x) * blockDim.x) {
    const float4 v = p[i];
    acc += (v.x + v.y) + (v.z + v.w);
  }
  if (acc == 1234.5f) out[0] = acc;  // keeps the loads alive
}

// Standard normal values from a counter-based hash (Box-Muller), for the benchmark only.
__global__ void fill_normal_kernel(float* x, size_t n, uint32_t seed) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t a = uint32_t(i) * 2654435761u ^ seed, b = uint32_t(i >> 32) + 0x9e3779b9u + seed;
    for (int r = 0; r < 4; ++r) {
      a ^= b * 0x85ebca6bu;
      a = (a << 13) | (a >> 19);
      b += a * 0xc2b2ae35u;
      b ^= b >> 16;
    }
    const float u1 = (float(a >> 8) + 1.0f) * (1.0f / 16777217.0f);
    const float u2 = float(b >> 8) * (1.0f / 16777216.0f);
    x[i] = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
  }
}

void check_p(int p) {
  if (p != 2 && p != 4 && p != 6 && p != 8 && p != 16)
    throw_cuda_error("higgs", "no CUDA kernel for tuple size d=" + std::to_string(p) +
                                  " (supported: 2, 4, 6, 8, 16)");
}

template <template <int> class F, typename... Args>
void dispatch_p(int p, Args&&... args) {
  switch (p) {
    case 2:
      F<2>::run(args...);
      break;
    case 4:
      F<4>::run(args...);
      break;
    case 6:
      F<6>::run(args...);
      break;
    case 8:
      F<8>::run(args...);
      break;
    case 16:
      F<16>::run(args...);
      break;
    default:
      check_p(p);
  }
}

constexpr int kEncodeThreads = 128;

template <int P>
struct EncodeLaunch {
  static void run(const float* x, size_t n, const Layout& L, const float* grid, uint8_t* out) {
    const int warps = kEncodeThreads / 32;
    const size_t smem = (size_t(L.npts) * (P + 1) + size_t(warps) * L.T * P) * sizeof(float);
    const size_t work = (n * L.G + warps - 1) / warps;
    const int blocks = grid_blocks(encode_kernel<P>, kEncodeThreads, smem, work);
    encode_kernel<P><<<blocks, kEncodeThreads, smem>>>(x, n, L, grid, out);
    KVO_CUDA_CHECK(cudaGetLastError());
  }
};

template <int P>
struct ScoreGridLaunch {
  static void run(const float* q, const uint8_t* keys, size_t n, const Layout& L, const float* grid,
                  float* scores, int threads) {
    const size_t smem =
        (size_t(L.npts) * P + size_t(L.G) * L.T * P) * sizeof(float) + threads * L.rec;
    const int blocks =
        grid_blocks(score_grid_kernel<P>, threads, smem, (n + threads - 1) / threads);
    score_grid_kernel<P><<<blocks, threads, smem>>>(q, keys, n, L, grid, scores);
    KVO_CUDA_CHECK(cudaGetLastError());
  }
};

}  // namespace

void higgs_encode(const HiggsQuantizer& q, const float* d_x, size_t n, size_t dim, uint8_t* d_out) {
  check_p(q.p());
  if (n == 0) return;
  const Layout L = layout_of(q, dim);
  dispatch_p<EncodeLaunch>(q.p(), d_x, n, L, device_grid(q.grid()), d_out);
  KVO_CUDA_CHECK(cudaDeviceSynchronize());
}

void higgs_score(const HiggsQuantizer& q, const float* d_qrot, const uint8_t* d_keys, size_t n,
                 size_t dim, float* d_scores) {
  check_p(q.p());
  if (n == 0) return;
  const Layout L = layout_of(q, dim);
  const float* grid = device_grid(q.grid());
  const int threads = 256;
  const size_t lut_smem = size_t(L.G) * L.T * L.npts * sizeof(float) + threads * L.rec;
  if (lut_smem <= 100 * 1024) {
    const int blocks =
        grid_blocks(score_lut_kernel, threads, lut_smem, (n + threads - 1) / threads);
    score_lut_kernel<<<blocks, threads, lut_smem>>>(d_qrot, d_keys, n, L, grid, d_scores);
    KVO_CUDA_CHECK(cudaGetLastError());
  } else {
    dispatch_p<ScoreGridLaunch>(q.p(), d_qrot, d_keys, n, L, grid, d_scores, threads);
  }
  KVO_CUDA_CHECK(cudaDeviceSynchronize());
}

void higgs_decode_bf16(const HiggsQuantizer& q, const uint8_t* d_keys, size_t n, size_t dim,
                       uint16_t* d_out) {
  if (n == 0) return;
  const Layout L = layout_of(q, dim);
  const int threads = 128, warps = threads / 32;
  const size_t smem = size_t(warps) * L.h * sizeof(float);
  const int blocks = grid_blocks(decode_bf16_kernel, threads, smem, (n * L.G + warps - 1) / warps);
  decode_bf16_kernel<<<blocks, threads, smem>>>(d_keys, n, L, device_grid(q.grid()),
                                                reinterpret_cast<__nv_bfloat16*>(d_out));
  KVO_CUDA_CHECK(cudaGetLastError());
  KVO_CUDA_CHECK(cudaDeviceSynchronize());
}

namespace {

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  explicit DeviceBuffer(size_t count) {
    KVO_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(1, count) * sizeof(T)));
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

}  // namespace

std::vector<uint8_t> higgs_encode_host(const HiggsQuantizer& q, const float* x, size_t n,
                                       size_t dim) {
  DeviceBuffer<float> dx(n * dim);
  DeviceBuffer<uint8_t> dout(q.encoded_bytes(n, dim));
  KVO_CUDA_CHECK(cudaMemcpy(dx.ptr, x, n * dim * sizeof(float), cudaMemcpyHostToDevice));
  higgs_encode(q, dx.ptr, n, dim, dout.ptr);
  std::vector<uint8_t> out(q.encoded_bytes(n, dim));
  KVO_CUDA_CHECK(cudaMemcpy(out.data(), dout.ptr, out.size(), cudaMemcpyDeviceToHost));
  return out;
}

std::vector<float> higgs_score_host(const HiggsQuantizer& q, const float* query,
                                    const uint8_t* keys, size_t n, size_t dim) {
  const std::vector<float> qrot = q.rotate_query(query, dim);
  DeviceBuffer<float> dq(qrot.size()), ds(n);
  DeviceBuffer<uint8_t> dk(q.encoded_bytes(n, dim));
  KVO_CUDA_CHECK(cudaMemcpy(dq.ptr, qrot.data(), qrot.size() * 4, cudaMemcpyHostToDevice));
  KVO_CUDA_CHECK(cudaMemcpy(dk.ptr, keys, q.encoded_bytes(n, dim), cudaMemcpyHostToDevice));
  higgs_score(q, dq.ptr, dk.ptr, n, dim, ds.ptr);
  std::vector<float> out(n);
  KVO_CUDA_CHECK(cudaMemcpy(out.data(), ds.ptr, n * 4, cudaMemcpyDeviceToHost));
  return out;
}

std::vector<uint16_t> higgs_decode_bf16_host(const HiggsQuantizer& q, const uint8_t* keys, size_t n,
                                             size_t dim) {
  DeviceBuffer<uint8_t> dk(q.encoded_bytes(n, dim));
  DeviceBuffer<uint16_t> dout(n * dim);
  KVO_CUDA_CHECK(cudaMemcpy(dk.ptr, keys, q.encoded_bytes(n, dim), cudaMemcpyHostToDevice));
  higgs_decode_bf16(q, dk.ptr, n, dim, dout.ptr);
  std::vector<uint16_t> out(n * dim);
  KVO_CUDA_CHECK(cudaMemcpy(out.data(), dout.ptr, n * dim * 2, cudaMemcpyDeviceToHost));
  return out;
}

namespace {

// Median milliseconds of reps runs of f after one warm-up.
template <typename F>
double time_ms(int reps, F&& f) {
  cudaEvent_t a, b;
  KVO_CUDA_CHECK(cudaEventCreate(&a));
  KVO_CUDA_CHECK(cudaEventCreate(&b));
  f();
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    KVO_CUDA_CHECK(cudaEventRecord(a));
    f();
    KVO_CUDA_CHECK(cudaEventRecord(b));
    KVO_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    KVO_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

BenchResult bench_higgs(const HiggsQuantizer& q, size_t n_encode, size_t n_score, size_t dim,
                        int reps) {
  BenchResult r;
  cudaDeviceProp prop{};
  int dev = 0;
  KVO_CUDA_CHECK(cudaGetDevice(&dev));
  KVO_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  r.device = prop.name;
  r.n_encode = n_encode;
  r.n_score = n_score;
  const size_t rec = q.bytes_per_vector(dim);
  DeviceBuffer<float> dx(n_encode * dim), dsink(1), dscores(n_score);
  DeviceBuffer<uint8_t> dcodes(n_encode * rec), dkeys(n_score * rec);
  fill_normal_kernel<<<4096, 256>>>(dx.ptr, n_encode * dim, 1234u);
  KVO_CUDA_CHECK(cudaGetLastError());
  const double in_bytes = double(n_encode) * dim * sizeof(float);

  // Plain read of the same fp32 input: the bandwidth ceiling for this run.
  const size_t n4 = n_encode * dim / 4;
  r.read_ms = time_ms(reps, [&] {
    read_kernel<<<sm_count() * 8, 512>>>(reinterpret_cast<const float4*>(dx.ptr), n4, dsink.ptr);
  });
  r.read_gbs = in_bytes / (r.read_ms * 1e6);

  r.encode_ms = time_ms(reps, [&] { higgs_encode(q, dx.ptr, n_encode, dim, dcodes.ptr); });
  r.encode_gbs = in_bytes / (r.encode_ms * 1e6);

  // Score keys: the encoded batch tiled to n_score records.
  for (size_t done = 0; done < n_score; done += n_encode) {
    const size_t k = std::min(n_encode, n_score - done);
    KVO_CUDA_CHECK(
        cudaMemcpy(dkeys.ptr + done * rec, dcodes.ptr, k * rec, cudaMemcpyDeviceToDevice));
  }
  std::vector<float> query(dim);
  for (size_t j = 0; j < dim; ++j) query[j] = std::sin(0.37f * float(j) + 0.1f);
  const std::vector<float> qrot = q.rotate_query(query.data(), dim);
  DeviceBuffer<float> dq(qrot.size());
  KVO_CUDA_CHECK(cudaMemcpy(dq.ptr, qrot.data(), qrot.size() * 4, cudaMemcpyHostToDevice));
  const double key_bytes = double(n_score) * rec;
  r.score_ms = time_ms(reps, [&] { higgs_score(q, dq.ptr, dkeys.ptr, n_score, dim, dscores.ptr); });
  r.score_gbs = key_bytes / (r.score_ms * 1e6);

  DeviceBuffer<uint16_t> dbf(n_encode * dim);
  r.decode_ms = time_ms(reps, [&] { higgs_decode_bf16(q, dcodes.ptr, n_encode, dim, dbf.ptr); });
  r.decode_gbs = double(n_encode) * rec / (r.decode_ms * 1e6);
  return r;
}

}  // namespace kvo::quant::cuda
