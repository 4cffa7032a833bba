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

}  // namespace kvo
