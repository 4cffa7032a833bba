// Throughput of the device quantizer kernels (device_quantizer.h) on random N(0,1) bf16 rows,
// next to a plain read-bandwidth kernel over the same input in the same run.
#pragma once
#include <cstddef>
#include <string>

#include "quant/quantizer.h"

namespace kvo::quant::cuda {

struct BenchResult {
  std::string device;
  size_t n_encode = 0, n_score = 0;
  double read_gbs = 0;        // plain read of the bf16 encode input
  double encode_gbs = 0;      // encode_bf16, GB/s of bf16 input
  double decode_gbs = 0;      // decode_rows_bf16 of every record, GB/s of records
  double score_gbs = 0;       // HIGGS score_heads, one query per KV head, GB/s of keys
  double score_gqa8_gbs = 0;  // the same keys scored by a GQA group of 8 queries
  double read_ms = 0, encode_ms = 0, decode_ms = 0, score_ms = 0, score_gqa8_ms = 0;
};

// Each time is the median of `reps` CUDA-event-timed runs after a warm-up. Score runs over
// n_score keys (the encoded batch tiled) and only for HIGGS quantizers.
BenchResult bench_quantizer(const Quantizer& q, size_t n_encode, size_t n_score, size_t dim,
                            int reps = 10);

}  // namespace kvo::quant::cuda
