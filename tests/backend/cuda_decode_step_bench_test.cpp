// Where a decode step's time goes, at the Llama-3.1-8B shape, batch 1 (set KVO_CUDA_BENCH=1; the
// figures go to bench/RESULTS.md, nothing here is timed against a target). Every measurement is
// a CUDA graph of the backend's ops, replayed: each decode GEMM alone (10 launches in a row) with
// its read bandwidth next to the plain read (cuda_read_bandwidth), greedy sampling of the
// logits, the decode attention at 4K/32K/128K keys, and 32 layers of a step's ops in order (norm
// with q/k/v, RoPE with the K/V append, attention, o with the residual add, norm with gate/up and
// SwiGLU, down with the residual add) next to the same chain of its four GEMMs alone: the
// difference is what the small ops and the gaps between kernels cost. The 32 layers run once on
// one layer's weights and once on 32 layers' own (14 GB, as a model). Weights and caches are
// uninitialized device memory (the values do not change the speed).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>
#include <vector>

#include "backend/backend.h"
#ifdef KVO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace kvo {
namespace {

#ifdef KVO_HAVE_CUDA
// Milliseconds per replay of the work `queue` queues (recorded once, replayed `reps` times).
double replay_ms(Backend& b, const std::function<void()>& queue, int reps) {
  std::unique_ptr<Recording> rec = b.record(queue);
  rec->replay();
  b.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) rec->replay();
  b.synchronize();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(t1 - t0).count() / reps;
}

TEST(CudaDecodeStepBench, Llama31_8BShapeBatch1) {
  if (!std::getenv("KVO_CUDA_BENCH")) GTEST_SKIP() << "set KVO_CUDA_BENCH=1";
  auto cuda = make_backend("auto", 0);
  if (cuda->name() != "cuda") GTEST_SKIP() << "no CUDA GPU";
  Backend& b = *cuda;
  const int64_t hidden = 4096, inter = 14336, heads = 32, kv_heads = 8, d = 128, vocab = 128256;
  const int64_t qw = heads * d, kw = kv_heads * d, context = 4096;
  const double gbps = cuda_read_bandwidth(b, int64_t{4} << 30) / 1e9;
  std::printf("plain read: %.0f GB/s\n", gbps);

  DeviceArray wq = b.alloc(qw, hidden), wk = b.alloc(kw, hidden), wv = b.alloc(kw, hidden),
              wo = b.alloc(hidden, qw), w_gate_up = b.alloc(2 * inter, hidden),
              w_down = b.alloc(hidden, inter), lm_head = b.alloc(vocab, hidden),
              norm = b.alloc(1, hidden);
  // Zero activations (the weights and caches may hold anything, activations feed norms).
  auto zeros = [&](int64_t cols) {
    return b.upload(HostTensor::owned_f32({1, cols}, std::vector<float>(cols, 0.0f)));
  };
  DeviceArray x = zeros(hidden), q = zeros(qw), k = zeros(kw), v = zeros(kw), attn = zeros(qw),
              ffn = zeros(inter), logits = zeros(vocab);
  const InputNorm input_norm{norm.tensor(), 1e-5f};
  const Tensor qkv_w[3] = {wq.tensor(), wk.tensor(), wv.tensor()};
  const Tensor* no_bias[3] = {nullptr, nullptr, nullptr};
  const Tensor qkv_out[3] = {q.tensor(), k.tensor(), v.tensor()};

  struct Gemm {
    const char* name;
    std::function<void()> op;
    double bytes;
  };
  const Gemm gemms[] = {
      {"q/k/v", [&] { b.matmul_many(x.tensor(), &input_norm, qkv_w, no_bias, qkv_out); },
       2.0 * (qw + 2 * kw) * hidden},
      {"o", [&] { b.matmul_add(attn.tensor(), wo.tensor(), nullptr, x.tensor()); },
       2.0 * hidden * qw},
      {"gate/up",
       [&] { b.matmul_swiglu(x.tensor(), &input_norm, w_gate_up.tensor(), ffn.tensor()); },
       2.0 * 2 * inter * hidden},
      {"down", [&] { b.matmul_add(ffn.tensor(), w_down.tensor(), nullptr, x.tensor()); },
       2.0 * hidden * inter},
      {"lm head", [&] { b.matmul(x.tensor(), lm_head.tensor(), nullptr, logits.tensor()); },
       2.0 * vocab * hidden},
      {"norm+lm head",  // as the model runs it: the final norm inside
       [&] {
         const Tensor head[1] = {lm_head.tensor()}, out[1] = {logits.tensor()};
         const Tensor* none[1] = {nullptr};
         b.matmul_many(x.tensor(), &input_norm, head, none, out);
       },
       2.0 * vocab * hidden},
  };
  for (const Gemm& g : gemms) {
    const double ms = replay_ms(
                          b,
                          [&] {
                            for (int i = 0; i < 10; ++i) g.op();
                          },
                          5) /
                      10;
    std::printf("matvec %-8s %8.1f us  %6.0f GB/s  (%.0f%% of the plain read)\n", g.name, ms * 1e3,
                g.bytes / ms / 1e6, 100.0 * g.bytes / ms / 1e6 / gbps);
  }

  DeviceArray ids = b.alloc_ints(1);
  const std::vector<float> draw{0.5f};
  const double sample_ms = replay_ms(
                               b,
                               [&] {
                                 for (int i = 0; i < 10; ++i)
                                   b.sample(logits.tensor(), 0.0f, 0, 1.0f, draw, ids.tensor());
                               },
                               5) /
                           10;
  std::printf("greedy sampling of %lld logits %8.1f us\n", (long long)vocab, sample_ms * 1e3);

  RopeParams rope;
  for (int i = 0; i < d / 2; ++i)
    rope.inv_freq.push_back(std::pow(500000.0f, -2.0f * float(i) / float(d)));
  DeviceArray position = b.alloc_ints(1);
  for (int64_t keys : {int64_t{4096}, int64_t{32768}, int64_t{131072}}) {
    DeviceArray cache_k = b.alloc(keys, kw), cache_v = b.alloc(keys, kw);
    b.write_ints(position.tensor(), std::vector<int32_t>{int32_t(keys - 1)});
    const AttentionShape shape{
        int(heads), int(kv_heads), int(d), 1, 0, keys, 1.0f / std::sqrt(float(d))};
    const double ms = replay_ms(
                          b,
                          [&] {
                            for (int i = 0; i < 10; ++i)
                              b.attention_at(q.tensor(), cache_k.tensor(), cache_v.tensor(), shape,
                                             position.tensor(), attn.tensor());
                          },
                          5) /
                      10;
    const double bytes = 2.0 * 2 * keys * kw;
    std::printf("attention %6lld keys %8.1f us  %6.0f GB/s\n", (long long)keys, ms * 1e3,
                bytes / ms / 1e6);
  }

  // 32 layers and a 4K cache per layer, the layers sharing one layer's weights (436 MB, far
  // beyond L2) or each with its own (14 GB, as a model holds them: the same bytes, spread over
  // 32 times the pages).
  DeviceArray cache_k = b.alloc(32 * (context + 64), kw),
              cache_v = b.alloc(32 * (context + 64), kw);
  b.write_ints(position.tensor(), std::vector<int32_t>{int32_t(context)});
  const AttentionShape shape{
      int(heads), int(kv_heads), int(d), 1, 0, context + 64, 1.0f / std::sqrt(float(d))};
  auto layer_cache = [&](const DeviceArray& c, int l) {
    return c.tensor().row_range(l * (context + 64), context + 64);
  };
  struct LayerWeights {
    Tensor qkv[3], o, gate_up, down;
  };
  std::vector<DeviceArray> own;  // the layers' own weights
  std::vector<LayerWeights> shared_weights(32), own_weights(32);
  for (int l = 0; l < 32; ++l) {
    shared_weights[l] = {
        {wq.tensor(), wk.tensor(), wv.tensor()}, wo.tensor(), w_gate_up.tensor(), w_down.tensor()};
    const std::pair<int64_t, int64_t> shapes[] = {{qw, hidden},        {kw, hidden},
                                                  {kw, hidden},        {hidden, qw},
                                                  {2 * inter, hidden}, {hidden, inter}};
    for (auto [rows, cols] : shapes) own.push_back(b.alloc(rows, cols));
    const size_t i = own.size() - 6;
    own_weights[l] = {{own[i].tensor(), own[i + 1].tensor(), own[i + 2].tensor()},
                      own[i + 3].tensor(),
                      own[i + 4].tensor(),
                      own[i + 5].tensor()};
  }
  auto step = [&](const std::vector<LayerWeights>& weights, bool small_ops) {
    for (int l = 0; l < 32; ++l) {
      const LayerWeights& w = weights[l];
      b.matmul_many(x.tensor(), &input_norm, w.qkv, no_bias, qkv_out);
      if (small_ops) {
        const Tensor keys[1] = {layer_cache(cache_k, l)}, values[1] = {layer_cache(cache_v, l)};
        b.rope_store_attention_batch_at(q.tensor(), k.tensor(), v.tensor(), position.tensor(),
                                        int(d), rope, keys, values, shape, attn.tensor());
      }
      b.matmul_add(attn.tensor(), w.o, nullptr, x.tensor());
      b.matmul_swiglu(x.tensor(), &input_norm, w.gate_up, ffn.tensor());
      b.matmul_add(ffn.tensor(), w.down, nullptr, x.tensor());
    }
  };
  const double layer_bytes = 2.0 * hidden * (qw + 2 * kw + qw + 3 * inter);
  double full = 0.0;
  for (const auto* weights : {&shared_weights, &own_weights}) {
    full = replay_ms(
        b, [&] { step(*weights, true); }, 10);
    const double gemms_only = replay_ms(
        b, [&] { step(*weights, false); }, 10);
    std::printf(
        "32 layers, 4K context, %s weights: all ops %.3f ms, the GEMMs alone %.3f ms (%.0f%% of "
        "the plain read), small ops and gaps %.3f ms\n",
        weights == &own_weights ? "own" : "shared", full, gemms_only,
        100.0 * 32 * layer_bytes / (gemms_only * 1e6) / gbps, full - gemms_only);
  }
  EXPECT_GT(full, 0.0);
}
#endif

}  // namespace
}  // namespace kvo
