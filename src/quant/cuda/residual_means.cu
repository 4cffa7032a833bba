// The meta-vectors of a residual encode: per block of m vectors, the mean summed in double in
// vector order and rounded once to fp32, exactly as ResidualQuantizer::encode_into.
#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"

namespace kvo::quant::cuda {
namespace {

__global__ void block_means_kernel(SourceRows src, size_t n, size_t m, float* means) {
  const size_t blocks = (n + m - 1) / m, total = blocks * src.dim;
  for (size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += size_t(gridDim.x) * blockDim.x) {
    const size_t b = e / src.dim, j = e % src.dim;
    const size_t end = min(n, (b + 1) * m);
    double s = 0.0;
    for (size_t i = b * m; i < end; ++i) s += double(src.at(i, j));
    means[e] = float(s / double(end - b * m));
  }
}

}  // namespace

void block_means(const SourceRows& src, size_t n, size_t m, float* means, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int threads = 256;
  const size_t total = (n + m - 1) / m * src.dim;
  const int blocks =
      resident_blocks(block_means_kernel, threads, 0, (total + threads - 1) / threads);
  block_means_kernel<<<blocks, threads, 0, stream>>>(src, n, m, means);
  KVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kvo::quant::cuda
