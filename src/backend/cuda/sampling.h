// Next-token sampling on the device (sampling.cu), the rule of cpu_sample_token
// (backend/cpu/cpu_backend.h): one block per row of logits.
//
// Candidates are ordered by the 64-bit key (ordered logit bits << 32 | ~id): descending keys are
// exactly the CPU's order (logit descending, ties by lowest id), so "the top k", "the smallest
// prefix of mass >= top_p" and "where the draw falls" are each one key threshold, found bit by
// bit (64 block-wide count or mass reductions) without sorting the vocabulary.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kvo::cuda {

// ids[r] for logits rows [rows, vocab] (stride ls); temperature 0 = greedy. uniforms: [rows]
// device fp32 draws in [0, 1) and scratch: rows * vocab device floats (both unused, may be null,
// when greedy).
void sample(const __nv_bfloat16* logits, int64_t ls, int64_t rows, int64_t vocab, float temperature,
            int top_k, float top_p, const float* uniforms, float* scratch, int32_t* ids,
            cudaStream_t stream);

}  // namespace kvo::cuda
