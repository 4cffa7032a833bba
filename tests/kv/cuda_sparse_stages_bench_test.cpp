// CudaSparseStagesBench.* (set KVO_CUDA_BENCH=1): where one layer of a yakv decode step goes at
// the Llama-3.1-8B shape and a 128K prompt, stage by stage, for one sequence alone and for 25
// sequences at once on their own streams (the batch the host memory allows): HIGGS landmark
// scoring, the softmax aggregation over each KV head's group, the top-k selection, and the
// fetch (zero-copy gather of the selected keys' 64-byte codes from mapped host memory, then
// their decode to bf16). Random inputs: the kernels' work does not depend on the values.
// Skipped without a CUDA build or device.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "quant/device.h"
#ifdef KVO_HAVE_CUDA
#include <cuda_runtime.h>

#include "kv/cuda/buffers.h"
#include "kv/cuda/sparse_kernels.h"
#include "quant/cuda/device_quantizer.h"
#include "quant/higgs.h"
#include "quant/spec.h"
#endif

namespace kvo {
namespace {

#ifdef KVO_HAVE_CUDA
using cuda::DeviceBuffer;
using cuda::MappedHostBuffer;

// One sequence's buffers for one layer's selection and fetch.
struct SequenceLayer {
  static constexpr int H = 8, Hq = 32, D = 128;
  static constexpr int64_t m = 130944, k = 4096;  // candidate tokens, selected per KV head
  DeviceBuffer<uint16_t> q{size_t(Hq * D)};
  DeviceBuffer<uint8_t> landmarks;                 // (H, m) HIGGS d=4 records
  DeviceBuffer<float> logits{size_t(Hq * m)};      // (Hq, m)
  DeviceBuffer<float2> stats{size_t(Hq)};          //
  DeviceBuffer<float> agg{size_t(H * m)};          // (H, m)
  DeviceBuffer<int32_t> selected{size_t(H * k)};   // (H, k)
  DeviceBuffer<int32_t> list{size_t(H * k)};       // records token * H + head
  DeviceBuffer<uint8_t> staging;                   // (H * k, 64)
  DeviceBuffer<uint16_t> keys{size_t(H * k * D)};  // (H * k, D) bf16
  cudaStream_t stream = nullptr;
};

template <typename T>
void fill_random(DeviceBuffer<T>& d, std::mt19937_64& rng, T lo, T hi) {
  std::vector<T> h(d.size());
  if constexpr (std::is_floating_point_v<T>) {
    std::uniform_real_distribution<T> u(lo, hi);
    for (T& x : h) x = u(rng);
  } else {
    std::uniform_int_distribution<int64_t> u(lo, hi);
    for (T& x : h) x = T(u(rng));
  }
  KVO_CUDA(cudaMemcpy(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
}

TEST(CudaSparseStagesBench, Yakv128KOneLayer) {
  if (!std::getenv("KVO_CUDA_BENCH")) GTEST_SKIP() << "set KVO_CUDA_BENCH=1";
  std::string why;
  if (!quant::cuda_device_available(&why)) GTEST_SKIP() << why;
  using S = SequenceLayer;
  constexpr int kBatch = 25, kReps = 10;
  const auto landmark_q = quant::parse_quantizer("higgs:d=4,n=256", S::D);
  const auto store_q = quant::parse_quantizer("higgs:d=2,n=256", S::D);
  const auto& higgs = dynamic_cast<const quant::HiggsQuantizer&>(*landmark_q);
  quant::cuda::prepare(*landmark_q);
  quant::cuda::prepare(*store_q);
  const size_t lm_bytes = landmark_q->encoded_bytes(size_t(S::m), S::D);  // per head
  const int64_t store_rec = int64_t(store_q->encoded_bytes(1, S::D));
  // One layer's key codes of a 128K sequence: (tokens, H) records.
  MappedHostBuffer store(size_t((S::m + 64) * S::H * store_rec));
  std::mt19937_64 rng(17);
  std::vector<S> seqs(kBatch);
  for (S& s : seqs) {
    KVO_CUDA(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    fill_random<uint16_t>(s.q, rng, 0x3c00, 0x3f80);  // bf16 bits of 0.0078 .. 1
    // Landmark records: encode random keys once (valid codes and scales).
    DeviceBuffer<uint16_t> lm_rows(size_t(S::H * S::m * S::D));
    fill_random<uint16_t>(lm_rows, rng, 0x3c00, 0x3f80);
    s.landmarks = DeviceBuffer<uint8_t>(lm_bytes * S::H);
    quant::cuda::encode_bf16(*landmark_q, lm_rows.get(), S::D, size_t(S::H * S::m), S::D,
                             s.landmarks.get(), nullptr);
    s.staging = DeviceBuffer<uint8_t>(size_t(S::H * S::k * store_rec));
    std::vector<int32_t> list;
    for (int h = 0; h < S::H; ++h)
      for (int64_t r = 0; r < S::k; ++r) list.push_back(int32_t((r * (S::m / S::k)) * S::H + h));
    KVO_CUDA(cudaMemcpy(s.list.get(), list.data(), list.size() * 4, cudaMemcpyHostToDevice));
  }
  KVO_CUDA(cudaDeviceSynchronize());
  const float scale = 1.0f / std::sqrt(float(S::D));
  const std::vector<std::pair<const char*, std::function<void(S&)>>> stages = {
      {"score (HIGGS d=4)",
       [&](S& s) {
         quant::cuda::score_heads(higgs, s.q.get(), S::Hq * S::D, 1, S::Hq, S::Hq / S::H,
                                  s.landmarks.get(), size_t(S::m), S::D, scale, s.logits.get(),
                                  s.stream);
       }},
      {"aggregate",
       [&](S& s) {
         cuda::aggregate_scores(s.logits.get(), 1, S::Hq, S::Hq / S::H, S::m, false, s.stats.get(),
                                s.agg.get(), s.stream);
       }},
      {"top-k",
       [&](S& s) {
         cuda::top_k_rows(s.agg.get(), S::H, S::m, S::k, false, s.selected.get(), s.stream);
       }},
      {"fetch keys",
       [&](S& s) {
         cuda::gather_records(store.device(), store_rec, nullptr, store_rec, s.list.get(), nullptr,
                              S::H * S::k, nullptr, nullptr, nullptr, s.staging.get(), s.stream);
         quant::cuda::decode_rows_bf16(*store_q, s.staging.get(), size_t(S::H * S::k), nullptr,
                                       size_t(S::H * S::k), S::D, s.keys.get(), S::D, s.stream);
       }},
  };
  // Inputs of each stage are the outputs of the one before: run the chain once first.
  for (S& s : seqs)
    for (const auto& st : stages) st.second(s);
  KVO_CUDA(cudaDeviceSynchronize());
  for (const auto& [name, run] : stages)
    for (int batch : {1, kBatch}) {
      KVO_CUDA(cudaDeviceSynchronize());
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < kReps; ++r)
        for (int i = 0; i < batch; ++i) run(seqs[size_t(i)]);
      KVO_CUDA(cudaDeviceSynchronize());
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
          kReps;
      std::printf("bench yakv 128K layer stage %-18s batch %2d: %8.1f us (%6.1f us a sequence)\n",
                  name, batch, us, us / batch);
      EXPECT_GT(us, 0.0);
    }
  for (S& s : seqs) cudaStreamDestroy(s.stream);
}
#endif

}  // namespace
}  // namespace kvo
