// HIGGS encode on CUDA: group norm, Hadamard rotation, exact nearest EDEN point through the
// pruned candidate lists of nearest_table.h. Same bytes as HiggsQuantizer::encode_into.
#include "quant/cuda/grid_tables.cuh"
#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"
#include "quant/cuda/warp_hadamard.cuh"

namespace kvo::quant::cuda {
namespace {

struct EncodeShape {
  int h, T, G, cb, npts;  // group, tuples per group, groups per vector, code bytes, grid points
  size_t codes_bytes;
};

// Group g of vector i into registers (lane holds values lane*E .. lane*E+E of the group),
// y = H x / s into y[0..h); returns s = ||x|| (canonical_sum_squares order).
template <int E>
__device__ float rotate_regs(const SourceRows& src, size_t i, size_t j0, float* y, int lane) {
  float v[E];
#pragma unroll
  for (int k = 0; k < E; ++k) {
    const size_t j = j0 + size_t(lane * E + k);
    v[k] = j < src.dim ? src.at(i, j) : 0.0f;
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

// Groups above 128 values go through the warp's shared-memory slice y.
__device__ float rotate_smem(const SourceRows& src, size_t i, size_t j0, int h, float* y,
                             int lane) {
  for (int k = lane; k < h; k += 32) y[k] = j0 + k < src.dim ? src.at(i, j0 + k) : 0.0f;
  __syncwarp();
  const int E = h / 32;
  float acc = 0.0f;
  for (int k = 0; k < E; ++k) acc = fmaf(y[lane * E + k], y[lane * E + k], acc);
  const float s = sqrtf(warp_sum_xor(acc));
  warp_hadamard_smem(y, h, lane);
  for (int k = lane; k < h; k += 32) y[k] = s > 0.0f ? y[k] / s : 0.0f;
  return s;
}

// One warp per (vector, group). Shared memory: grid points [npts, P], half norms [npts], then
// each warp's y slice [T * P] (its tail past h stays zero: the padded last tuple).
template <int P>
__global__ void higgs_encode_kernel(SourceRows src, size_t n, EncodeShape S, RecordMap out,
                                    DeviceGrid grid) {
  extern __shared__ float smem[];
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* pts = smem;
  float* hn = pts + S.npts * P;
  float* y = hn + S.npts + warp * S.T * P;
  for (int k = threadIdx.x; k < S.npts * P; k += blockDim.x) pts[k] = grid.points[k];
  for (int k = threadIdx.x; k < S.npts; k += blockDim.x) hn[k] = grid.half_norms[k];
  for (int k = S.h + lane; k < S.T * P; k += 32) y[k] = 0.0f;
  __syncthreads();
  const size_t tasks = n * size_t(S.G);
  for (size_t task = size_t(blockIdx.x) * warps + warp; task < tasks;
       task += size_t(gridDim.x) * warps) {
    const size_t i = task / S.G;
    const int g = int(task % S.G);
    const size_t j0 = size_t(g) * S.h;
    float s;
    if (S.h == 64)
      s = rotate_regs<2>(src, i, j0, y, lane);
    else if (S.h == 128)
      s = rotate_regs<4>(src, i, j0, y, lane);
    else
      s = rotate_smem(src, i, j0, S.h, y, lane);
    __syncwarp();
    uint8_t* rec = out.at(i);
    for (int t = lane; t < S.T; t += 32) {
      float yt[P];
#pragma unroll
      for (int j = 0; j < P; ++j) yt[j] = y[t * P + j];
      const uint32_t c = nearest_pruned<P>(yt, pts, hn, S.npts, grid.table);
      const size_t idx = size_t(g) * S.T + t;
      if (S.cb == 1) {
        rec[idx] = uint8_t(c);
      } else {
        rec[2 * idx] = uint8_t(c & 0xff);
        rec[2 * idx + 1] = uint8_t(c >> 8);
      }
    }
    if (lane == 0) {
      store_f32(rec + S.codes_bytes + 4 * size_t(g), s);
      if (g == 0)
        for (size_t b = size_t(S.G) * S.T * S.cb; b < S.codes_bytes; ++b) rec[b] = 0;
    }
    __syncwarp();
  }
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
    constexpr int threads = 128, warps = threads / 32;
    const size_t smem = (size_t(S.npts) * (P + 1) + size_t(warps) * S.T * P) * sizeof(float);
    const size_t tasks = n * size_t(S.G);
    const int blocks =
        resident_blocks(higgs_encode_kernel<P>, threads, smem, (tasks + warps - 1) / warps);
    higgs_encode_kernel<P><<<blocks, threads, smem, stream>>>(src, n, S, out, grid);
    KVO_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace kvo::quant::cuda
