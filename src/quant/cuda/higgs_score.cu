// HIGGS scores on CUDA in the rotated domain (higgs.h): per query a table lut[t][c] =
// grid[c] . (H q)_t in shared memory, then each key costs one table read per tuple.
//
// Lanes split a key's tuples, not the keys: a lane owns R consecutive tuples of a key and the
// table stores them in columns chosen so that the 32 lanes of a read always hit 32 different
// banks whatever the codes (a key per lane would hit random banks). A warp takes 32 steps of
// one or two keys at a time, keeps one partial sum per step in each lane, and a transposing
// butterfly leaves each key's total in one lane (31 or 30 shuffles per 32 steps). Tables above
// kLutBytes are split into tuple slices, one launch each, the later ones adding to the scores
// in slice order (deterministic).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "quant/cuda/device_quantizer.h"
#include "quant/cuda/grid_tables.cuh"
#include "quant/cuda/launch.cuh"
#include "quant/cuda/warp_hadamard.cuh"
#include "quant/device.h"

namespace kvo::quant::cuda {
namespace {

constexpr size_t kLutBytes = 64 * 1024;
constexpr int kThreads = 256, kWarps = kThreads / 32;

struct ScoreShape {
  int h, p, T, npts;  // group, tuple size, tuples per record, grid points
  int t0, TS, R, W;   // this slice: first tuple, tuples, tuples per lane, table columns
  size_t dim, rec, codes_bytes, head_bytes, n_keys, keys_per_block;
  int num_q_heads, group;
  int64_t q_stride;
  float factor;     // scale / h
  bool accumulate;  // add to the scores of earlier slices
};

template <int LB>
__device__ __forceinline__ uint32_t load_word(const uint8_t* p) {
  if constexpr (LB == 1) return p[0];
  if constexpr (LB == 2) return *reinterpret_cast<const uint16_t*>(p);
  return *reinterpret_cast<const uint32_t*>(p);
}

// Sums the 32 partial sums of each lane group (LPK = 32 / KPS lanes) transposed: each step
// hands half of the values to the partner lane (xor OFF) and keeps the other half, so after the
// steps OFF = LPK/2 .. 1 lane i of its group holds the totals of values i*V .. i*V+V-1 in
// acc[0..V), V = 32 / LPK. OFF and V are template constants: every index is static and acc
// stays in registers.
template <int OFF, int V>
__device__ __forceinline__ void transpose_reduce(float (&acc)[32], int lane) {
  const bool upper = lane & OFF;
#pragma unroll
  for (int i = 0; i < V / 2; ++i) {
    const float send = upper ? acc[i] : acc[i + V / 2];
    const float keep = upper ? acc[i + V / 2] : acc[i];
    acc[i] = keep + __shfl_xor_sync(kFullMask, send, OFF);
  }
  if constexpr (OFF > 1) transpose_reduce<OFF / 2, V / 2>(acc, lane);
}

// blockIdx.x: query (r * num_q_heads + hq), so the queries of one KV head run side by side and
// share its keys in L2; blockIdx.y: a run of keys_per_block keys.
// KPS keys per warp step: lane group h = lane / LPK takes key kb + KPS*s + h at step s, its
// lane i the tuples i*R .. i*R+R-1 (R = TS*KPS/32); the table keeps KPS copies side by
// side, tuple i*R+r of copy h in column r*32 + h*LPK + i, so a read is conflict-free. Two keys
// per step halve the loads and the reduction per key. LB: bytes per code load (the lane's R
// codes in LB-byte words), CB: bytes per code.
template <int LB, int CB, int KPS>
__global__ void __launch_bounds__(kThreads, 2)
    higgs_score_kernel(const uint16_t* __restrict__ q, ScoreShape S,
                       const uint8_t* __restrict__ keys, const float* __restrict__ pts,
                       float* __restrict__ scores) {
  constexpr int LPK = 32 / KPS, V = KPS;  // lanes per key, totals per lane at the end
  extern __shared__ float smem[];
  float* qrot = smem;       // [h]
  float* lut = smem + S.h;  // [npts][W]
  const int W = S.W;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, h = lane / LPK, li = lane % LPK;
  const int qi = blockIdx.x, r = qi / S.num_q_heads, hq = qi % S.num_q_heads;
  const uint16_t* qv = q + int64_t(r) * S.q_stride + int64_t(hq) * int64_t(S.dim);
  for (int k = threadIdx.x; k < S.h; k += kThreads)
    qrot[k] = size_t(k) < S.dim ? bf16_to_float(qv[k]) : 0.0f;
  __syncthreads();
  if (warp == 0) warp_hadamard_smem(qrot, S.h, lane);
  __syncthreads();
  for (int idx = threadIdx.x; idx < S.npts * W; idx += kThreads) {
    const int c = idx / W, col = idx % W;
    const int t = S.t0 + (col % 32 % LPK) * S.R + col / 32;
    float acc = 0.0f;
    if (t < S.T && t < S.t0 + S.TS)
      for (int j = 0; j < S.p; ++j)
        if (t * S.p + j < S.h) acc = fmaf(pts[c * S.p + j], qrot[t * S.p + j], acc);
    lut[idx] = acc;
  }
  __syncthreads();

  const uint8_t* head = keys + size_t(hq / S.group) * S.head_bytes;
  float* out = scores + size_t(qi) * S.n_keys;
  const size_t begin = size_t(blockIdx.y) * S.keys_per_block;
  const size_t end = min(S.n_keys, begin + S.keys_per_block);
  const int first = S.t0 + li * S.R;    // the lane's first tuple
  const bool active = li * S.R < S.TS;  // slices narrower than the lanes leave some idle
  constexpr int kCodesPerWord = LB / CB;
  for (size_t kb = begin + size_t(warp) * 32 * KPS; kb < end; kb += kWarps * 32 * KPS) {
    const int nk = int(min(size_t(32 * KPS), end - kb));
    float acc[32];
#pragma unroll
    for (int s = 0; s < 32; ++s) acc[s] = 0.0f;
    for (int c0 = 0; c0 < S.R; c0 += kCodesPerWord) {
      if (!active || first + c0 >= S.T) break;  // nothing (left) for this lane
      const uint8_t* base = head + (kb + h) * S.rec + size_t(first + c0) * CB;
      // All 32 loads first, so they are in flight together; keys past the end read as code 0
      // into sums that are never stored.
      uint32_t w[32];
#pragma unroll
      for (int s = 0; s < 32; ++s)
        w[s] = KPS * s + h < nk ? load_word<LB>(base + size_t(KPS * s) * S.rec) : 0u;
#pragma unroll
      for (int b = 0; b < kCodesPerWord; ++b)
#pragma unroll
        for (int s = 0; s < 32; ++s) {
          const uint32_t code = CB == 1 ? (w[s] >> (8 * b)) & 0xffu : (w[s] >> (16 * b)) & 0xffffu;
          acc[s] += lut[code * W + (c0 + b) * 32 + lane];
        }
    }
    transpose_reduce<LPK / 2, 32>(acc, lane);
#pragma unroll
    for (int u = 0; u < V; ++u) {
      const int s = li * V + u, k = KPS * s + h;
      if (k < nk) {
        const size_t key = kb + k;
        const float v = acc[u] * load_f32(head + key * S.rec + S.codes_bytes) * S.factor;
        out[key] = S.accumulate ? out[key] + v : v;
      }
    }
  }
}

template <int LB, int CB, int KPS>
void launch_slice(const uint16_t* d_q, const ScoreShape& S, size_t n_queries, const uint8_t* d_keys,
                  const float* pts, float* d_scores, cudaStream_t stream) {
  const size_t smem = (size_t(S.h) + size_t(S.npts) * S.W) * sizeof(float);
  auto* kernel = higgs_score_kernel<LB, CB, KPS>;
  const int resident = resident_blocks(kernel, kThreads, smem, size_t(1) << 30);
  // Enough key runs for two waves of resident blocks, each at least one pass of the warps.
  const size_t runs_wanted = std::max<size_t>(1, 2 * size_t(resident) / n_queries);
  ScoreShape s = S;
  s.keys_per_block = std::max<size_t>(kThreads, (S.n_keys + runs_wanted - 1) / runs_wanted);
  const size_t runs = (S.n_keys + s.keys_per_block - 1) / s.keys_per_block;
  if (runs > 65535)
    throw_error("score_heads: " + std::to_string(S.n_keys) + " keys per head is too many");
  kernel<<<dim3(unsigned(n_queries), unsigned(runs)), kThreads, smem, stream>>>(d_q, s, d_keys, pts,
                                                                                d_scores);
  KVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void score_heads(const HiggsQuantizer& q, const uint16_t* d_q, int64_t q_stride, size_t n_rows,
                 int num_q_heads, int group, const uint8_t* d_keys, size_t n_keys, size_t dim,
                 float scale, float* d_scores, cudaStream_t stream) {
  auto reject = [&](const std::string& why) {
    throw_error("score_heads(" + q.spec() + "): " + why);
  };
  if (!higgs_tuple_supported(q.p())) reject("no CUDA kernel for this tuple size");
  if (dim < 1 || dim > size_t(q.group()))
    reject("records must hold one Hadamard group, dim " + std::to_string(dim) +
           " is above the group");
  if (num_q_heads < 1 || group < 1 || num_q_heads % group != 0)
    reject(std::to_string(num_q_heads) + " query heads cannot form GQA groups of " +
           std::to_string(group));
  if (q_stride < int64_t(num_q_heads) * int64_t(dim))
    reject("query row stride " + std::to_string(q_stride) + " below heads x dim");
  if (reinterpret_cast<uintptr_t>(d_keys) % 4 != 0) reject("keys must be 4-byte aligned");
  const size_t n_queries = n_rows * size_t(num_q_heads);
  if (n_queries == 0 || n_keys == 0) return;
  ScoreShape S{};
  S.h = q.group();
  S.p = q.p();
  S.T = q.tuples();
  S.npts = q.n_points();
  S.dim = dim;
  S.rec = q.bytes_per_vector(dim);
  S.codes_bytes = q.codes_bytes(dim);
  S.head_bytes = q.encoded_bytes(n_keys, dim);
  S.n_keys = n_keys;
  S.num_q_heads = num_q_heads;
  S.group = group;
  S.q_stride = q_stride;
  S.factor = scale / float(S.h);
  const int cb = q.code_bytes();
  // Slice width TS: the most tuples (a power of two) whose table fits. Two keys per warp step
  // when two copies of the table fit and a key has at least 16 tuples to spread over 16 lanes.
  const size_t fit = std::max<size_t>(1, kLutBytes / (sizeof(float) * size_t(S.npts)));
  int TS = 1;
  while (size_t(TS) * 2 <= fit && TS < S.T) TS *= 2;
  const int kps = TS >= 16 && size_t(2 * TS) <= fit ? 2 : 1;
  S.TS = TS;
  S.R = std::max(1, TS * kps / 32);  // tuples per lane
  // 32 * R columns keep every read conflict-free; a slice narrower than the lanes (grids of
  // thousands of points) keeps just its TS columns, read by lanes 0..TS-1.
  S.W = TS * kps >= 32 ? 32 * S.R : TS;
  const int LB = std::min(S.R * cb, 4);
  const float* pts = device_grid(q.grid()).points;
  for (int t0 = 0; t0 < S.T; t0 += TS) {
    S.t0 = t0;
    S.accumulate = t0 > 0;
    auto go = [&](auto lb, auto cbc, auto kpsc) {
      launch_slice<decltype(lb)::value, decltype(cbc)::value, decltype(kpsc)::value>(
          d_q, S, n_queries, d_keys, pts, d_scores, stream);
    };
    using I1 = std::integral_constant<int, 1>;
    using I2 = std::integral_constant<int, 2>;
    using I4 = std::integral_constant<int, 4>;
    auto with_kps = [&](auto lb, auto cbc) { kps == 2 ? go(lb, cbc, I2{}) : go(lb, cbc, I1{}); };
    if (cb == 1)
      LB == 1 ? with_kps(I1{}, I1{}) : LB == 2 ? with_kps(I2{}, I1{}) : with_kps(I4{}, I1{});
    else
      LB == 2 ? with_kps(I2{}, I2{}) : with_kps(I4{}, I2{});
  }
}

}  // namespace kvo::quant::cuda
