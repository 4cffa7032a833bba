// Shared by the KV policy tests: a small model shape, bf16-representable attend() inputs for a
// prompt and a few decode steps, and a driver that runs a policy over them.
#pragma once
#include <algorithm>
#include <cmath>
#include <random>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "kv/kv_policy.h"
#include "model/rope.h"

namespace kvo::testing {

inline ModelConfig small_config(int head_dim) {
  ModelConfig c;
  c.num_layers = 4;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = head_dim;
  c.hidden_size = c.num_heads * head_dim;
  c.rope_theta = 10000.0f;
  return c;
}

inline std::vector<float> bf16_values(size_t n, std::mt19937_64& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(dist(rng)));
  return v;
}

// One attend() call's inputs, host-side; k = bf16(RoPE(k_pre)) so re-RoPE'd keys match.
struct Inputs {
  int64_t start = 0, n = 0;
  std::vector<float> q, k_pre, k, v;
};

inline Inputs make_inputs(const ModelConfig& c, int64_t start, int64_t n, std::mt19937_64& rng) {
  const int64_t W = int64_t(c.num_kv_heads) * c.head_dim, Wq = int64_t(c.num_heads) * c.head_dim;
  Inputs in;
  in.start = start;
  in.n = n;
  in.q = bf16_values(size_t(n * Wq), rng, 2.0f);  // sharp attention, as in real models
  in.k_pre = bf16_values(size_t(n * W), rng);
  in.v = bf16_values(size_t(n * W), rng);
  auto cpu = make_cpu_backend(1);
  DeviceArray k = cpu->upload(HostTensor::owned_f32({n, W}, in.k_pre));
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = int32_t(start + i);
  cpu->rope(k.tensor(), pos, c.head_dim, make_rope_params(c));
  in.k = cpu->download(k.tensor());
  for (float& x : in.k) x = bf16_to_f32(f32_to_bf16(x));
  return in;
}

// Runs `kv` on `backend` over the steps (per step, every layer gets its own inputs; a step at
// position 0 is the prompt, followed by finish_prefill); returns the outputs of every decode step
// and layer, downloaded to floats.
inline std::vector<std::vector<float>> run(Backend& backend, KvPolicy& kv, const ModelConfig& c,
                                           std::span<const std::vector<Inputs>> steps,
                                           std::vector<std::vector<KvHeadDiagnostics>>* diag) {
  const int64_t W = int64_t(c.num_kv_heads) * c.head_dim, Wq = int64_t(c.num_heads) * c.head_dim;
  std::vector<std::vector<float>> outs;
  for (size_t s = 0; s < steps.size(); ++s) {
    for (int l = 0; l < c.num_layers; ++l) {
      const Inputs& in = steps[s][size_t(l)];
      DeviceArray q = backend.upload(HostTensor::owned_f32({in.n, Wq}, in.q));
      DeviceArray kp = backend.upload(HostTensor::owned_f32({in.n, W}, in.k_pre));
      DeviceArray k = backend.upload(HostTensor::owned_f32({in.n, W}, in.k));
      DeviceArray v = backend.upload(HostTensor::owned_f32({in.n, W}, in.v));
      DeviceArray out = backend.alloc(in.n, Wq);
      kv.attend(l, in.start, q.tensor(), kp.tensor(), k.tensor(), v.tensor(), out.tensor());
      if (in.start > 0) outs.push_back(backend.download(out.tensor()));
    }
    const bool prompt = steps[s][0].start == 0;
    if (prompt) kv.finish_prefill();
    if (!prompt && diag) diag->push_back(dynamic_cast<KvDiagnosable&>(kv).diagnostics());
  }
  return outs;
}

// The prompt (T tokens), then decode steps of 1, 2 (a multi-token step: causal among the new
// tokens), 1 tokens; capacity T + 4.
inline std::vector<std::vector<Inputs>> make_steps(const ModelConfig& c, int64_t T, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<Inputs>> steps;
  int64_t start = 0;
  for (int64_t n : {T, int64_t{1}, int64_t{2}, int64_t{1}}) {
    std::vector<Inputs> layers;
    for (int l = 0; l < c.num_layers; ++l) layers.push_back(make_inputs(c, start, n, rng));
    steps.push_back(std::move(layers));
    start += n;
  }
  return steps;
}

inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double e = 0, r = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    e += double(got[i] - want[i]) * (got[i] - want[i]);
    r += double(want[i]) * want[i];
  }
  return std::sqrt(e / std::max(r, 1e-30));
}

}  // namespace kvo::testing
