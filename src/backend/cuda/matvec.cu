// Decode GEMMs (matvec.h): one warp per output feature.
#include <type_traits>

#include "backend/cuda/check.h"
#include "backend/cuda/device_math.cuh"
#include "backend/cuda/matvec.h"
#include "backend/cuda/overlap.h"

namespace kvo::cuda {
namespace {

// acc[r] += dot(8 weights in `w`, 8 elements of row r of x at chunk c), the weights scaled by
// chunk c of the norm weight g when there is one (the rest of the norm, 1/rms, is per row and
// applied after the sum); with kSumSquares, sumsq[r] += the squares of those 8 elements. Each
// weight times g is rounded to bf16, two at a time in one packed multiply, with no conversion of
// g: in fp32 the fused norm cost q/k/v 1.8 of its 17.0 us and the LM head 8 of 247, this way 1.5
// and 2.7 (H200, Llama-3.1-8B; bench/RESULTS.md), at one more bf16 rounding of each product.
template <int M, bool kSumSquares>
__device__ __forceinline__ void matvec_fma(float (&acc)[M], float (&sumsq)[M], const uint4& w,
                                           const bf16* x, int64_t xs, int c, const bf16* g) {
  const __nv_bfloat162* wp = reinterpret_cast<const __nv_bfloat162*>(&w);
  float2 wf[4];
  if (g) {
    const uint4 gv = reinterpret_cast<const uint4*>(g)[c];
    const __nv_bfloat162* gp = reinterpret_cast<const __nv_bfloat162*>(&gv);
#pragma unroll
    for (int j = 0; j < 4; ++j) wf[j] = __bfloat1622float2(__hmul2(wp[j], gp[j]));
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) wf[j] = __bfloat1622float2(wp[j]);
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
    const uint4 xv = reinterpret_cast<const uint4*>(x + r * xs)[c];
    const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 xf = __bfloat1622float2(xp[j]);
      acc[r] = fmaf(wf[j].x, xf.x, fmaf(wf[j].y, xf.y, acc[r]));
      if constexpr (kSumSquares) sumsq[r] = fmaf(xf.x, xf.x, fmaf(xf.y, xf.y, sumsq[r]));
    }
  }
}

struct MatvecArgs {
  MatvecPart parts[kMatvecParts];
  int64_t first_row[kMatvecParts + 1];  // part i owns rows [first_row[i], first_row[i+1])
  int count;
  MatvecOptions options;
};

// A lane streams the 16-byte chunks lane, lane + 32, ... of a weight row, 4 loads in flight.
constexpr int kMatvecBatch = 4;

// The lane's first batch of chunks of weight row wr. Weights are never written during a step, so
// this runs before the PDL wait: the loads overlap the predecessor's tail.
__device__ __forceinline__ void matvec_first_batch(uint4 (&wv)[kMatvecBatch], const uint4* wr,
                                                   int chunks, int lane) {
#pragma unroll
  for (int u = 0; u < kMatvecBatch; ++u)
    if (lane + 32 * u < chunks) wv[u] = __ldcs(wr + lane + 32 * u);  // streamed: read once a step
}

// acc[r] = this lane's share of dot(weight row wr, row r of x) over `chunks` 16-byte chunks,
// starting from the batch in wv; with kSumSquares, sumsq[r] = its share of |row r of x|^2 (the
// lanes of a warp cover every chunk of x once). kWhole: chunks is a multiple of a batch (k a
// multiple of 1024, every Llama and Qwen projection), so no chunk needs a bound check and the
// compiler may issue a batch's loads of x (and g) together instead of one chunk at a time.
template <int M, bool kSumSquares, bool kWhole>
__device__ __forceinline__ void matvec_row(float (&acc)[M], float (&sumsq)[M],
                                           uint4 (&wv)[kMatvecBatch], const uint4* wr,
                                           const bf16* x, int64_t xs, int chunks, int lane,
                                           const bf16* g) {
#pragma unroll
  for (int r = 0; r < M; ++r) {
    acc[r] = 0.0f;
    if constexpr (kSumSquares) sumsq[r] = 0.0f;
  }
  for (int c = lane;; c += 32 * kMatvecBatch) {
#pragma unroll
    for (int u = 0; u < kMatvecBatch; ++u)
      if (kWhole || c + 32 * u < chunks)
        matvec_fma<M, kSumSquares>(acc, sumsq, wv[u], x, xs, c + 32 * u, g);
    const int next = c + 32 * kMatvecBatch;
    if (next >= chunks) break;
#pragma unroll
    for (int u = 0; u < kMatvecBatch; ++u)
      if (kWhole || next + 32 * u < chunks) wv[u] = __ldcs(wr + next + 32 * u);
  }
}

// kMatvecWarps warps per block, one output feature (row of the stacked parts) per warp. With a
// norm, each warp also sums the squares of x while it streams, so 1/rms needs no pass of its own.
// The one-row kernel is held to 64 registers, 4 blocks an SM: q/k/v, o and down are one wave or
// little more, and their time is mostly the ramp up and down, which more resident warps shorten
// (H200, Llama-3.1-8B q/k/v: 15.4 us at 4 blocks, 1.45 waves, against 16.3 at the 6 that make it
// one wave at 40 registers, and 16.8 there with whole batches, which spill 120 bytes).
constexpr int kMatvecWarps = 8;
template <int M>
__global__ void __launch_bounds__(kMatvecWarps * 32, M == 1 ? 4 : 1)
    matvec_kernel(const bf16* x, int64_t xs, int64_t k, const MatvecArgs args) {
  allow_successor();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * int64_t(kMatvecWarps) + warp;
  const bool active = row < args.first_row[args.count];
  int part = 0;
  while (part + 1 < args.count && row >= args.first_row[part + 1]) ++part;
  const MatvecPart& p = args.parts[part];
  const int64_t n = row - args.first_row[part];
  const int chunks = int(k / 8);  // matvec_fits
  const uint4* w = reinterpret_cast<const uint4*>(p.w + n * p.ws);
  const uint4* w_up = p.w_up ? reinterpret_cast<const uint4*>(p.w_up + n * p.ws) : nullptr;
  uint4 wv[kMatvecBatch];
  if (active) matvec_first_batch(wv, w, chunks, lane);
  wait_for_predecessor();
  if (!active) return;
  const bf16* g = args.options.norm_w;
  float acc[M], up[M], sumsq[M];
  const auto rows = [&](auto whole) {
    constexpr bool kWhole = decltype(whole)::value;
    if (g)
      matvec_row<M, true, kWhole>(acc, sumsq, wv, w, x, xs, chunks, lane, g);
    else
      matvec_row<M, false, kWhole>(acc, sumsq, wv, w, x, xs, chunks, lane, g);
    // p is the same for the whole warp, so every lane takes this branch or none (warp_sum).
    if (w_up) {
      matvec_first_batch(wv, w_up, chunks, lane);
      matvec_row<M, false, kWhole>(up, sumsq, wv, w_up, x, xs, chunks, lane, g);
    }
  };
  if (chunks % (32 * kMatvecBatch) == 0)
    rows(std::true_type{});
  else
    rows(std::false_type{});
#pragma unroll
  for (int r = 0; r < M; ++r) {
    const float scale = g ? rsqrtf(warp_sum(sumsq[r]) / float(k) + args.options.eps) : 1.0f;
    float v = warp_sum(acc[r]) * scale;
    if (w_up) v = silu(v) * (warp_sum(up[r]) * scale);
    if (lane == 0) {
      if (p.bias) v += __bfloat162float(p.bias[n]);
      bf16* o = p.out + r * p.os + n;
      if (args.options.accumulate) v += __bfloat162float(*o);
      *o = __float2bfloat16_rn(v);
    }
  }
}

template <int M>
void launch_matvec(const bf16* x, int64_t xs, int64_t k, const MatvecArgs& args,
                   cudaStream_t stream) {
  const int64_t blocks = (args.first_row[args.count] + kMatvecWarps - 1) / kMatvecWarps;
  launch_overlapped("matvec_kernel", matvec_kernel<M>, unsigned(blocks), kMatvecWarps * 32, 0,
                    stream, x, xs, k, args);
}

}  // namespace

bool matvec_fits(const bf16* x, int64_t xs, const bf16* w, int64_t ws, int64_t m, int64_t k) {
  // k <= 2^33: the kernel's 32-bit chunk indices (k / 8 plus a batch) cannot overflow.
  return m >= 1 && m <= kMatvecRows && k % 8 == 0 && k <= (int64_t(1) << 33) && xs % 8 == 0 &&
         ws % 8 == 0 && aligned(x, 16) && aligned(w, 16);
}

void matvec(const bf16* x, int64_t xs, const MatvecPart* parts, int count, int64_t m, int64_t k,
            const MatvecOptions& options, cudaStream_t stream) {
  MatvecArgs args{};
  args.count = count;
  args.options = options;
  for (int i = 0; i < count; ++i) {
    args.parts[i] = parts[i];
    args.first_row[i + 1] = args.first_row[i] + parts[i].n;
  }
  if (args.first_row[count] == 0) return;
  switch (m) {
    case 1:
      launch_matvec<1>(x, xs, k, args, stream);
      break;
    default:
      launch_matvec<2>(x, xs, k, args, stream);
      break;
  }
}

}  // namespace kvo::cuda
