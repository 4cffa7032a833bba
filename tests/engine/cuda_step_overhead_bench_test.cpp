// CudaStepOverheadBench.* (set KVO_CUDA_BENCH=1): where a batch-1 decode step of the
// Llama-3.1-8B shape (random weights, 4K context, dense KV) spends the time outside its kernels.
// It times the Decoder's steps as `kvoffload bench` runs them (two in flight: the positions
// written, the recorded step replayed, the ids read back), then the same forward recorded and
// replayed back to back with nothing else queued (no sampling: 13 us in CudaDecodeStepBench).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "backend/backend.h"
#include "engine/decoder.h"
#include "kv/kv_policy.h"
#include "model/random_weights.h"
#include "model/transformer.h"

namespace kvo {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0, int reps) {
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(t1 - t0).count() / reps;
}

TEST(CudaStepOverheadBench, Llama31_8BBatch1At4K) {
  if (!std::getenv("KVO_CUDA_BENCH")) GTEST_SKIP() << "set KVO_CUDA_BENCH=1";
  auto backend = make_backend("auto", 0);
  if (backend->name() != "cuda") GTEST_SKIP() << "no CUDA GPU";
  Backend& b = *backend;
  LoadedModel m =
      load_random_model(std::string(KVO_SOURCE_DIR) + "/bench/configs/llama-3.1-8b.json");
  Transformer model(b, m.config, m.weights);
  b.synchronize();
  m.weights = {};
  constexpr int64_t T = 4096, kReps = 64;
  auto kv = make_kv_policy(b, m.config, KvSpec::parse("dense"), T + 4 * kReps);
  std::mt19937_64 rng(1);
  std::vector<int32_t> prompt(static_cast<size_t>(T));
  for (int32_t& id : prompt) id = int32_t(rng() % uint64_t(m.config.vocab_size));

  Decoder decoder(model, {kv.get()}, SamplingParams{});
  decoder.prefill(0, prompt);
  decoder.step();  // records
  decoder.queue_step();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kReps; ++i) {
    decoder.queue_step();
    decoder.collect();
  }
  const double pipelined = ms_since(t0, kReps);
  decoder.collect();
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kReps; ++i) decoder.step();
  const double one_at_a_time = ms_since(t0, kReps);

  // The same forward with its own batch state, replayed back to back (positions stay put).
  Transformer::DecodeBatch batch = model.make_decode_batch(1, false);
  b.write_ints(batch.ids.tensor(), std::vector<int32_t>{7});
  b.write_ints(batch.positions.tensor(), std::vector<int32_t>{int32_t(T + 3 * kReps)});
  KvPolicy* kvs[1] = {kv.get()};
  std::unique_ptr<Recording> rec = b.record([&] { model.queue_decode_step(batch, kvs, {}, true); });
  ASSERT_TRUE(rec);
  rec->replay();
  b.synchronize();
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kReps; ++i) rec->replay();
  b.synchronize();
  const double forward = ms_since(t0, kReps);
  std::printf(
      "4K batch 1: Decoder step pipelined %.3f ms, one at a time %.3f ms; the recorded forward "
      "replayed back to back %.3f ms\n",
      pipelined, one_at_a_time, forward);
  EXPECT_GT(forward, 0.0);
}

}  // namespace
}  // namespace kvo
