// HIGGS encode on CUDA: group norm, Hadamard rotation, exact nearest EDEN point through the
// pruned candidate lists of nearest_table.h. Same bytes as HiggsQuantizer::encode_into.
#include "quant/cuda/grid_tables.cuh"
#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"
#include "quant/cuda/warp_hadamard.cuh"

namespace kvo::quant::cuda {
namespace {

// Blocks of 4 warps, 8 per SM: 64 registers hold a search round of up to 8-value tuples;
// 16-value tuples get 128.
constexpr int kThreads = 128;
constexpr int min_blocks(int p) {
  return p <= 8 ? 8 : 4;
}

struct EncodeShape {
  int h, T, G, cb, npts;  // group, tuples per group, groups per vector, code bytes, grid points
  size_t codes_bytes;
};

// What the search needs: grid points [npts, P] and half norms in shared memory, the table.
struct SearchTables {
  const float* pts;
  const float* half_norms;
  int npts;
  NearestTableView table;
};

__device__ __forceinline__ void put_code(uint8_t* rec, const EncodeShape& S, int g, int t,
                                         uint32_t c) {
  const size_t idx = size_t(g) * S.T + t;
  if (S.cb == 1) {
    rec[idx] = uint8_t(c);
  } else {
    rec[2 * idx] = uint8_t(c & 0xff);
    rec[2 * idx + 1] = uint8_t(c >> 8);
  }
}

// Codes of group g from the normalized rotated values y[0..T*P) in the warp's shared slice, U
// tuples per lane and search (t, t + 32, ..; those past T search zeros and are not stored).
template <int P, int U>
__device__ void code_from_smem(const float* y, const EncodeShape& S, const SearchTables& st, int g,
                               uint8_t* rec, int lane) {
  for (int t0 = lane; t0 < S.T; t0 += 32 * U) {
    float yt[U * P];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int j = 0; j < P; ++j)
        yt[u * P + j] = t0 + 32 * u < S.T ? y[(t0 + 32 * u) * P + j] : 0.0f;
    uint32_t code[U];
    nearest_pruned<P, U>(yt, st.pts, st.half_norms, st.npts, st.table, code);
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (t0 + 32 * u < S.T) put_code(rec, S, g, t0 + 32 * u, code[u]);
  }
}

// Grids without a table, groups of <= 16 tuples (d=8, d=16 at h=128): two lanes per tuple
// scan all points, lane t the lower half and lane t + 16 the upper one; the lower half wins
// equal values, as it comes first in the full scan.
template <int P>
__device__ void code_split_scan(const float* y, const EncodeShape& S, const SearchTables& st, int g,
                                uint8_t* rec, int lane) {
  const int t = lane % 16;
  const bool upper = lane >= 16;
  float yt[P];
#pragma unroll
  for (int j = 0; j < P; ++j) yt[j] = t < S.T ? y[t * P + j] : 0.0f;
  const uint32_t mid = uint32_t(st.npts) / 2, end = upper ? uint32_t(st.npts) : mid;
  float best_d = INFINITY;
  uint32_t best = 0;
#pragma unroll 2
  for (uint32_t c = upper ? mid : 0; c < end; ++c)
    rank_point<P>(yt, st.pts, st.half_norms, c, best_d, best);
  const float upper_d = __shfl_xor_sync(kFullMask, best_d, 16);
  const uint32_t upper_best = __shfl_xor_sync(kFullMask, best, 16);
  if (!upper && t < S.T) put_code(rec, S, g, t, upper_d < best_d ? upper_best : best);
}

// The codes of a group in the shared slice: small groups of grids without a table split the
// scan over the warp; two tuples per lane and search once a group has two per lane (groups
// above 256 values).
template <int P>
__device__ void code_from_smem(const float* y, const EncodeShape& S, const SearchTables& st, int g,
                               uint8_t* rec, int lane) {
  if (!st.table.cells && S.T <= 16)
    code_split_scan<P>(y, S, st, g, rec, lane);
  else if (S.T >= 64)
    code_from_smem<P, 2>(y, S, st, g, rec, lane);
  else
    code_from_smem<P, 1>(y, S, st, g, rec, lane);
}

// Group of h = 32*E values in registers (lane holds values lane*E .. lane*E+E): norm, rotation,
// division by the norm, then the codes. When P divides E the lane's values are whole tuples
// and are searched in place; otherwise they go through the shared slice y. Returns s.
template <int E, int P>
__device__ float code_regs(float (&v)[E], float* y, const EncodeShape& S, const SearchTables& st,
                           int g, uint8_t* rec, int lane) {
  float acc = 0.0f;
#pragma unroll
  for (int k = 0; k < E; ++k) acc = fmaf(v[k], v[k], acc);
  const float s = sqrtf(warp_sum_xor(acc));
  warp_hadamard<E>(v, lane);
#pragma unroll
  for (int k = 0; k < E; ++k) v[k] = s > 0.0f ? v[k] / s : 0.0f;
  if constexpr (E % P == 0) {
    constexpr int U = E / P;  // the lane's tuples, searched together
    uint32_t code[U];
    nearest_pruned<P, U>(v, st.pts, st.half_norms, st.npts, st.table, code);
#pragma unroll
    for (int u = 0; u < U; ++u) put_code(rec, S, g, lane * U + u, code[u]);
  } else {
#pragma unroll
    for (int k = 0; k < E; ++k) y[lane * E + k] = v[k];
    __syncwarp();
    code_from_smem<P>(y, S, st, g, rec, lane);
  }
  return s;
}

// Groups above 128 values go through the warp's shared-memory slice y.
__device__ float rotate_smem(const SourceRow& row, size_t dim, size_t j0, int h, float* y,
                             int lane) {
  for (int k = lane; k < h; k += 32) y[k] = j0 + k < dim ? row.at(j0 + k) : 0.0f;
  __syncwarp();
  const int E = h / 32;
  float acc = 0.0f;
  for (int k = 0; k < E; ++k) acc = fmaf(y[lane * E + k], y[lane * E + k], acc);
  const float s = sqrtf(warp_sum_xor(acc));
  warp_hadamard_smem(y, h, lane);
  for (int k = lane; k < h; k += 32) y[k] = s > 0.0f ? y[k] / s : 0.0f;
  return s;
}

// Lane 0 stores the scale of group g and, once per record, zeroes the padding after the codes.
__device__ __forceinline__ void finish_group(const EncodeShape& S, uint8_t* rec, int g, float s,
                                             int lane) {
  if (lane == 0) {
    store_f32(rec + S.codes_bytes + 4 * size_t(g), s);
    if (g == 0)
      for (size_t b = size_t(S.G) * S.T * S.cb; b < S.codes_bytes; ++b) rec[b] = 0;
  }
}

// A warp's tasks, groups of h = 32*E values held in registers.
template <int E, int P>
__device__ void encode_tasks_regs(const SourceRows& src, size_t n, const EncodeShape& S,
                                  const SearchTables& st, const RecordMap& out, float* y,
                                  int lane) {
  for_each_warp_task(n, S.G, [&](size_t i, int g) {
    float v[E];
    src.row(i).load<E>(size_t(g) * S.h + size_t(lane * E), src.dim, v);
    uint8_t* rec = out.at(i);
    finish_group(S, rec, g, code_regs<E, P>(v, y, S, st, g, rec, lane), lane);
    __syncwarp();  // y is the next group's
  });
}

// A warp's tasks, groups above 128 values, through its shared-memory slice y.
template <int P>
__device__ void encode_tasks_smem(const SourceRows& src, size_t n, const EncodeShape& S,
                                  const SearchTables& st, const RecordMap& out, float* y,
                                  int lane) {
  for_each_warp_task(n, S.G, [&](size_t i, int g) {
    uint8_t* rec = out.at(i);
    const float s = rotate_smem(src.row(i), src.dim, size_t(g) * S.h, S.h, y, lane);
    __syncwarp();
    code_from_smem<P>(y, S, st, g, rec, lane);
    finish_group(S, rec, g, s, lane);
    __syncwarp();  // y is the next group's
  });
}

// One warp per (vector, group). Shared memory: grid points [npts, P], half norms [npts], then
// each warp's y slice [T * P] (its tail past h stays zero: the padded last tuple).
template <int P>
__global__ void __launch_bounds__(kThreads, min_blocks(P))
    higgs_encode_kernel(SourceRows src, size_t n, EncodeShape S, RecordMap out, DeviceGrid grid) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* pts = smem;
  float* hn = pts + S.npts * P;
  float* y = hn + S.npts + warp * S.T * P;
  for (int k = threadIdx.x; k < S.npts * P; k += blockDim.x) pts[k] = grid.points[k];
  for (int k = threadIdx.x; k < S.npts; k += blockDim.x) hn[k] = grid.half_norms[k];
  for (int k = S.h + lane; k < S.T * P; k += 32) y[k] = 0.0f;
  const SearchTables st{pts, hn, S.npts, grid.table};
  __syncthreads();
  if (S.h == 64)
    encode_tasks_regs<2, P>(src, n, S, st, out, y, lane);
  else if (S.h == 128)
    encode_tasks_regs<4, P>(src, n, S, st, out, y, lane);
  else
    encode_tasks_smem<P>(src, n, S, st, out, y, lane);
}

}  // namespace

void higgs_encode(const HiggsQuantizer& q, const SourceRows& src, size_t n, const RecordMap& out,
                  cudaStream_t stream) {
  if (n == 0) return;
  const DeviceGrid& grid = device_grid(q.grid());
  const EncodeShape S{q.group(),      q.tuples(),   int(q.groups(src.dim)),
                      q.code_bytes(), q.n_points(), q.codes_bytes(src.dim)};
  with_tuple_size(q.p(), [&](auto pc) {
    constexpr int P = decltype(pc)::value;
    constexpr int warps = kThreads / 32;
    const size_t smem = (size_t(S.npts) * (P + 1) + size_t(warps) * S.T * P) * sizeof(float);
    const size_t tasks = n * size_t(S.G);
    const int blocks =
        resident_blocks(higgs_encode_kernel<P>, kThreads, smem, (tasks + warps - 1) / warps);
    higgs_encode_kernel<P><<<blocks, kThreads, smem, stream>>>(src, n, S, out, grid);
    KVO_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace kvo::quant::cuda
