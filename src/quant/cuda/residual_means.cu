// The meta-vectors of a residual encode: per block of m vectors, the mean summed in double in
// vector order and rounded once to fp32, exactly as ResidualQuantizer::encode_into.
#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"

namespace kvo::quant::cuda {
namespace {

// One warp per block of m vectors, lanes along the vectors.
__global__ void block_means_kernel(SourceRows src, size_t n, size_t m, float* means) {
  const int lane = threadIdx.x % 32;
  const size_t blocks = (n + m - 1) / m;
  for (size_t b = grid_warp(); b < blocks; b += grid_warps()) {
    const size_t end = min(n, (b + 1) * m);
    for (size_t j = lane; j < src.dim; j += 32) {
      double s = 0.0;
      for (size_t i = b * m; i < end; ++i) s += double(src.row(i).at(j));
      means[b * src.dim + j] = float(s / double(end - b * m));
    }
  }
}

}  // namespace

void block_means(const SourceRows& src, size_t n, size_t m, float* means, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int threads = 256;
  const size_t warps = (n + m - 1) / m;
  const int blocks = resident_blocks(block_means_kernel, threads, 0, (warps + 7) / 8);
  block_means_kernel<<<blocks, threads, 0, stream>>>(src, n, m, means);
  KVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kvo::quant::cuda
