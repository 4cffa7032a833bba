// The sparse KV policies (yakv, shadowkv, quest) with real placement on the CUDA backend: the
// same layout, byte accounting and selections as the CPU reference (sparse.cpp), but every
// step runs on the GPU on the backend's stream without a host sync, and the offloaded stores
// live in mapped pinned host memory that a gather kernel reads over PCIe. Only in builds with
// KVO_HAVE_CUDA; make_kv_policy picks it when the backend is the CUDA backend.
#pragma once
#include <memory>

#include "kv/kv_policy.h"

namespace kvo {

// Whether the CUDA policy implements `spec` (resolved): its quantizers must have device kernels
// (the CPU reference's exact "f32" store has none).
bool cuda_sparse_supported(const KvSpec& spec, const ModelConfig& config);

std::unique_ptr<KvPolicy> make_cuda_sparse_policy(Backend& backend, const ModelConfig& config,
                                                  const KvSpec& spec, int64_t capacity);

}  // namespace kvo
