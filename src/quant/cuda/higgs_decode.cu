// HIGGS decode on CUDA: grid point * scale, inverse Hadamard, / h. The products use __fmul_rn so
// nvcc cannot fuse them into the butterflies' additions: fp32 results equal the CPU's bit for bit.
#include "quant/cuda/grid_tables.cuh"
#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"
#include "quant/cuda/warp_hadamard.cuh"

namespace kvo::quant::cuda {
namespace {

struct DecodeShape {
  int h, p, T, G, cb;
  size_t codes_bytes;
};

__device__ __forceinline__ uint32_t code_at(const uint8_t* rec, const DecodeShape& S, int g,
                                            int t) {
  const size_t idx = size_t(g) * S.T + t;
  return S.cb == 1 ? rec[idx] : (uint32_t(rec[2 * idx]) | (uint32_t(rec[2 * idx + 1]) << 8));
}

// Value k of group g before the transform: grid[code of tuple k / p][k % p] * s.
__device__ __forceinline__ float scaled_point_value(const uint8_t* rec, const DecodeShape& S,
                                                    const float* pts, int g, int k, float s) {
  const int t = k / S.p;
  return __fmul_rn(pts[code_at(rec, S, g, t) * S.p + (k - t * S.p)], s);
}

// Groups of h = 32*E values in registers, as in the encoder's rotation.
template <int E>
__device__ void decode_regs(const uint8_t* rec, const DecodeShape& S, const float* pts, int g,
                            float s, const DestRow& out, size_t dim, int lane) {
  float v[E];
#pragma unroll
  for (int k = 0; k < E; ++k) v[k] = scaled_point_value(rec, S, pts, g, lane * E + k, s);
  warp_hadamard<E>(v, lane);
  const float inv_h = 1.0f / float(32 * E);
#pragma unroll
  for (int k = 0; k < E; ++k) v[k] = __fmul_rn(v[k], inv_h);
  out.store<E>(size_t(g) * S.h + size_t(lane * E), dim, v);
}

// One warp per (output row, group); groups above 128 values use the warp's shared slice of h.
__global__ void higgs_decode_kernel(ConstRecordMap in, RowSelect sel, size_t n, DestRows dst,
                                    DecodeShape S, const float* __restrict__ pts) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* z = smem + warp * S.h;
  const float inv_h = 1.0f / float(S.h);  // exact: h is a power of two
  for_each_warp_task(n, S.G, [&](size_t i, int g) {
    const uint8_t* rec = in.at(sel(i));
    const DestRow out = dst.row(i);
    const float s = load_f32(rec + S.codes_bytes + 4 * size_t(g));
    const size_t j0 = size_t(g) * S.h;
    if (S.h == 64) {
      decode_regs<2>(rec, S, pts, g, s, out, dst.dim, lane);
      return;
    }
    if (S.h == 128) {
      decode_regs<4>(rec, S, pts, g, s, out, dst.dim, lane);
      return;
    }
    for (int k = lane; k < S.h; k += 32) z[k] = scaled_point_value(rec, S, pts, g, k, s);
    __syncwarp();
    warp_hadamard_smem(z, S.h, lane);
    for (int k = lane; k < S.h && j0 + k < dst.dim; k += 32)
      out.store(j0 + k, __fmul_rn(z[k], inv_h));
    __syncwarp();
  });
}

}  // namespace

void higgs_decode(const HiggsQuantizer& q, const ConstRecordMap& in, const RowSelect& sel, size_t n,
                  const DestRows& dst, cudaStream_t stream) {
  if (n == 0) return;
  const DecodeShape S{
      q.group(), q.p(), q.tuples(), int(q.groups(dst.dim)), q.code_bytes(), q.codes_bytes(dst.dim)};
  constexpr int threads = 128, warps = threads / 32;
  const size_t smem = size_t(warps) * S.h * sizeof(float);
  const size_t tasks = n * size_t(S.G);
  const int blocks =
      resident_blocks(higgs_decode_kernel, threads, smem, (tasks + warps - 1) / warps);
  higgs_decode_kernel<<<blocks, threads, smem, stream>>>(in, sel, n, dst, S,
                                                         device_grid(q.grid()).points);
  KVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kvo::quant::cuda
