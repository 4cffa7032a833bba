// FP8 (e4m3) and bf16 records on CUDA: one value per element, converted with the CPU's own
// scalar functions (scalar_codecs.h).
#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"

namespace kvo::quant::cuda {
namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;

// One warp per row, lanes along the row.
__global__ void elementwise_encode_kernel(bool fp8, SourceRows src, size_t n, RecordMap out) {
  const int lane = threadIdx.x % 32;
  for (size_t i = grid_warp(); i < n; i += grid_warps()) {
    const SourceRow row = src.row(i);
    uint8_t* rec = out.at(i);
    for (size_t j = lane; j < src.dim; j += 32) {
      const float v = row.at(j);
      if (fp8) {
        rec[j] = float_to_e4m3(v);
      } else {
        const uint16_t b = float_to_bf16(v);
        rec[2 * j] = uint8_t(b);
        rec[2 * j + 1] = uint8_t(b >> 8);
      }
    }
  }
}

__global__ void elementwise_decode_kernel(bool fp8, ConstRecordMap in, RowSelect sel, size_t n,
                                          DestRows dst) {
  const int lane = threadIdx.x % 32;
  for (size_t i = grid_warp(); i < n; i += grid_warps()) {
    const uint8_t* rec = in.at(sel(i));
    const DestRow out = dst.row(i);
    for (size_t j = lane; j < dst.dim; j += 32)
      out.store(j, fp8 ? e4m3_to_float(rec[j])
                       : bf16_to_float(uint16_t(rec[2 * j] | (uint16_t(rec[2 * j + 1]) << 8))));
  }
}

}  // namespace

void elementwise_encode(bool fp8, const SourceRows& src, size_t n, const RecordMap& out,
                        cudaStream_t stream) {
  if (n == 0 || src.dim == 0) return;
  const int blocks =
      resident_blocks(elementwise_encode_kernel, kThreads, 0, (n + kWarps - 1) / kWarps);
  elementwise_encode_kernel<<<blocks, kThreads, 0, stream>>>(fp8, src, n, out);
  KVO_CUDA_CHECK(cudaGetLastError());
}

void elementwise_decode(bool fp8, const ConstRecordMap& in, const RowSelect& sel, size_t n,
                        const DestRows& dst, cudaStream_t stream) {
  if (n == 0 || dst.dim == 0) return;
  const int blocks =
      resident_blocks(elementwise_decode_kernel, kThreads, 0, (n + kWarps - 1) / kWarps);
  elementwise_decode_kernel<<<blocks, kThreads, 0, stream>>>(fp8, in, sel, n, dst);
  KVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kvo::quant::cuda
