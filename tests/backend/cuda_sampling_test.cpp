// Device sampling (Backend::sample on CUDA) against the CPU rule (cpu_sample_token) on the same
// bf16-rounded logits with the same fixed draws: greedy, ties, temperature, top-k, top-p and both
// together. Draws are spread over [0, 1) so that every part of the kept candidates is hit; a
// draw exactly on a boundary between two candidates is avoided by construction (the CPU sums in
// double, the GPU in fp32). Skipped where no GPU is present.
#include <gtest/gtest.h>

#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"

namespace kvo {
namespace {

std::unique_ptr<Backend> cuda_or_null() {
  auto b = make_backend("auto", 0);
  return b->name() == "cuda" ? std::move(b) : nullptr;
}

struct Case {
  float temperature;
  int top_k;
  float top_p;
};

TEST(CudaSampling, MatchesTheCpuRuleOnFixedLogitsAndDraws) {
  auto cuda = cuda_or_null();
  if (!cuda) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  const int64_t rows = 16, vocab = 50000;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(rows * vocab);
  for (float& x : logits) x = bf16_to_f32(f32_to_bf16(normal(rng)));
  // Row 1: ties at the maximum (greedy and the top-k order must pick the lowest id first).
  for (int64_t i : {777, 123, 40000}) logits[vocab + i] = 20.0f;
  DeviceArray dev = cuda->upload(HostTensor::owned_f32({rows, vocab}, logits));
  DeviceArray ids = cuda->alloc_ints(rows);
  std::vector<float> uniforms(rows);
  for (int64_t r = 0; r < rows; ++r) uniforms[r] = (float(r) + 0.37f) / float(rows);

  for (const Case& c :
       {Case{0.0f, 0, 1.0f}, Case{1.0f, 0, 1.0f}, Case{0.7f, 40, 1.0f}, Case{1.0f, 0, 0.9f},
        Case{1.3f, 100, 0.5f}, Case{2.0f, 1, 1.0f}, Case{0.5f, 5000, 0.99f}}) {
    cuda->sample(dev.tensor(), c.temperature, c.top_k, c.top_p, uniforms, ids.tensor());
    const std::vector<int32_t> got = cuda->read_ints(ids.tensor());
    int same = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t want = cpu_sample_token(std::span(logits).subspan(r * vocab, vocab),
                                            c.temperature, c.top_k, c.top_p, uniforms[r]);
      same += got[r] == want;
      EXPECT_EQ(got[r], want) << "row " << r << " temperature " << c.temperature << " top_k "
                              << c.top_k << " top_p " << c.top_p;
    }
    std::printf("sampling T=%.1f top_k=%d top_p=%.2f: %d/%lld rows match the CPU rule\n",
                c.temperature, c.top_k, c.top_p, same, (long long)rows);
  }
  cuda->sample(dev.tensor(), 0.0f, 0, 1.0f, uniforms, ids.tensor());
  EXPECT_EQ(cuda->read_ints(ids.tensor())[1], 123);
}

}  // namespace
}  // namespace kvo
