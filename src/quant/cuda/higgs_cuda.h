// CUDA HIGGS kernels (src/quant/cuda/higgs_kernels.cu), defined only in builds with
// KVO_HAVE_CUDA. Same record layout as HiggsQuantizer (src/quant/higgs.h) and the same codes
// bit for bit: the transform, the group norm and the grid distances use the operation order
// documented in hadamard.h / grid.h. Supported tuple sizes: d = 2, 4, 6, 8, 16.
// Pointers named d_* are device memory; calls run on the default stream and synchronize.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "quant/higgs.h"

namespace kvo::quant::cuda {

// d_x: [n, dim] fp32 -> d_out: q.encoded_bytes(n, dim) bytes.
void higgs_encode(const HiggsQuantizer& q, const float* d_x, size_t n, size_t dim, uint8_t* d_out);
// d_qrot: [G*h] from q.rotate_query; d_keys: n records -> d_scores: [n] = dot(query, key_i).
void higgs_score(const HiggsQuantizer& q, const float* d_qrot, const uint8_t* d_keys, size_t n,
                 size_t dim, float* d_scores);
// d_keys: n records -> d_out: [n, dim] bf16 bits.
void higgs_decode_bf16(const HiggsQuantizer& q, const uint8_t* d_keys, size_t n, size_t dim,
                       uint16_t* d_out);

// Host-memory conveniences (copy in, run, copy out).
std::vector<uint8_t> higgs_encode_host(const HiggsQuantizer& q, const float* x, size_t n,
                                       size_t dim);
std::vector<float> higgs_score_host(const HiggsQuantizer& q, const float* query,
                                    const uint8_t* keys, size_t n, size_t dim);
std::vector<uint16_t> higgs_decode_bf16_host(const HiggsQuantizer& q, const uint8_t* keys, size_t n,
                                             size_t dim);

struct BenchResult {
  double read_gbs = 0;    // plain read-bandwidth kernel over the encode input
  double encode_gbs = 0;  // GB/s of fp32 input
  double score_gbs = 0;   // GB/s of encoded keys
  double decode_gbs = 0;  // GB/s of encoded keys (bf16 dequantization)
  double encode_ms = 0, score_ms = 0, decode_ms = 0, read_ms = 0;
  size_t n_encode = 0, n_score = 0;
  std::string device;
};
// Times each kernel (CUDA events, median of reps after a warm-up) on random N(0,1) data.
BenchResult bench_higgs(const HiggsQuantizer& q, size_t n_encode, size_t n_score, size_t dim,
                        int reps = 10);

}  // namespace kvo::quant::cuda
