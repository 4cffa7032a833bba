#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/cuda/bench.h"
#include "quant/cuda/device_buffer.h"
#include "quant/cuda/device_quantizer.h"
#include "quant/cuda/launch.cuh"

namespace kvo::quant::cuda {
namespace {

// The bandwidth ceiling: 16-byte loads summed into a register, nothing written.
__global__ void read_kernel(const uint4* __restrict__ p, size_t n16, unsigned* out) {
  unsigned acc = 0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n16;
       i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) out[0] = acc;  // keeps the loads alive
}

// Standard normal bf16 values from a counter-based hash (Box-Muller).
__global__ void fill_normal_bf16_kernel(uint16_t* x, size_t n, uint32_t seed) {
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
    x[i] = float_to_bf16(sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
  }
}

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

BenchResult bench_quantizer(const Quantizer& q, size_t n_encode, size_t n_score, size_t dim,
                            int reps) {
  BenchResult r;
  cudaDeviceProp prop{};
  int dev = 0;
  KVO_CUDA_CHECK(cudaGetDevice(&dev));
  KVO_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  r.device = prop.name;
  r.n_encode = n_encode;
  r.n_score = n_score;
  const size_t rec = q.encoded_bytes(1, dim), values = n_encode * dim;
  DeviceBuffer<uint16_t> dx(values), dout(values);
  DeviceBuffer<uint8_t> dcodes(q.encoded_bytes(n_encode, dim));
  DeviceBuffer<unsigned> sink(1);
  fill_normal_bf16_kernel<<<4096, 256>>>(dx.get(), values, 1234u);
  KVO_CUDA_CHECK(cudaGetLastError());
  const double in_bytes = double(values) * sizeof(uint16_t);

  r.read_ms = time_ms(reps, [&] {
    read_kernel<<<sm_count() * 8, 512>>>(reinterpret_cast<const uint4*>(dx.get()),
                                         values * sizeof(uint16_t) / 16, sink.get());
  });
  r.read_gbs = in_bytes / (r.read_ms * 1e6);
  r.encode_ms = time_ms(
      reps, [&] { encode_bf16(q, dx.get(), int64_t(dim), n_encode, dim, dcodes.get(), nullptr); });
  r.encode_gbs = in_bytes / (r.encode_ms * 1e6);
  r.decode_ms = time_ms(reps, [&] {
    decode_rows_bf16(q, dcodes.get(), n_encode, nullptr, n_encode, dim, dout.get(), int64_t(dim),
                     nullptr);
  });
  r.decode_gbs = double(q.encoded_bytes(n_encode, dim)) / (r.decode_ms * 1e6);

  const auto* higgs = dynamic_cast<const HiggsQuantizer*>(&q);
  if (!higgs || dim > size_t(higgs->group())) return r;
  DeviceBuffer<uint8_t> dkeys(n_score * rec);
  for (size_t done = 0; done < n_score; done += n_encode) {
    const size_t k = std::min(n_encode, n_score - done);
    KVO_CUDA_CHECK(
        cudaMemcpy(dkeys.get() + done * rec, dcodes.get(), k * rec, cudaMemcpyDeviceToDevice));
  }
  constexpr int kGqa = 8;
  std::vector<uint16_t> query(kGqa * dim);
  for (size_t j = 0; j < query.size(); ++j) query[j] = float_to_bf16(std::sin(0.37f * j + 0.1f));
  const DeviceBuffer<uint16_t> dq(query);
  DeviceBuffer<float> dscores(kGqa * n_score);
  const double key_bytes = double(n_score) * rec;
  r.score_ms = time_ms(reps, [&] {
    score_heads(*higgs, dq.get(), int64_t(dim), 1, 1, 1, dkeys.get(), n_score, dim, 1.0f,
                dscores.get(), nullptr);
  });
  r.score_gbs = key_bytes / (r.score_ms * 1e6);
  r.score_gqa8_ms = time_ms(reps, [&] {
    score_heads(*higgs, dq.get(), int64_t(kGqa * dim), 1, kGqa, kGqa, dkeys.get(), n_score, dim,
                1.0f, dscores.get(), nullptr);
  });
  r.score_gqa8_gbs = key_bytes / (r.score_gqa8_ms * 1e6);
  return r;
}

}  // namespace kvo::quant::cuda
