// The reference backend: fp32 compute on the host, BLAS GEMMs, OpenMP over rows and heads.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace kvo {

// threads <= 0: use all cores.
std::unique_ptr<Backend> make_cpu_backend(int threads);

// Flash-style causal GQA attention on fp32 host memory (cpu_attention.cpp); shared by the CPU
// backend and by CPU-side KV policies.
void cpu_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                   const Tensor& out);

// The sampling rule (cpu_sampling.cpp), shared by the CPU backend's sample() and engine/sampler:
// argmax (ties to the lowest id) when temperature == 0; else candidates sorted by logit (ties
// by id) cut to top_k (0 = all), softmax at `temperature`, cut to the smallest prefix whose mass
// reaches top_p, and the candidate where `u` (in [0, 1)) times the kept mass falls.
int32_t cpu_sample_token(std::span<const float> logits, float temperature, int top_k, float top_p,
                         double u);

}  // namespace kvo
