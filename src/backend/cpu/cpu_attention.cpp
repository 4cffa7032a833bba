// Causal GQA attention on the CPU, FlashAttention-style: queries in blocks, keys in tiles,
// an online softmax per query row, so memory is O(block * tile) whatever the context length.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

namespace kvo {
namespace {

constexpr int64_t kQueryBlock = 16;  // query tokens per work item
constexpr int64_t kKeyTile = 128;    // keys per softmax update

float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

void cpu_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                   const Tensor& out) {
  const int H = shape.num_heads, KV = shape.num_kv_heads, D = shape.head_dim;
  if (KV <= 0 || H % KV != 0)
    fail("internal: attention heads {} not a multiple of kv heads {}", H, KV);
  if (q.dtype != DType::F32 || k.dtype != DType::F32 || v.dtype != DType::F32)
    fail("internal: cpu_attention expects F32");
  const int G = H / KV;  // query heads per KV head
  const int64_t n_blocks = (shape.q_len + kQueryBlock - 1) / kQueryBlock;
  const float* Q = static_cast<const float*>(q.data);
  const float* K = static_cast<const float*>(k.data);
  const float* V = static_cast<const float*>(v.data);
  float* O = static_cast<float*>(out.data);

#pragma omp parallel
  {
    // Per-thread scratch: rows = (query token, head in group) pairs of one block.
    const int64_t R = kQueryBlock * G;
    std::vector<float> scores(R * kKeyTile), acc(R * D), row_max(R), row_sum(R);
#pragma omp for collapse(2) schedule(dynamic)
    for (int kvh = 0; kvh < KV; ++kvh) {
      for (int64_t blk = 0; blk < n_blocks; ++blk) {
        const int64_t t0 = blk * kQueryBlock;
        const int64_t nt = std::min(kQueryBlock, shape.q_len - t0);
        const int64_t last_pos = shape.q_start + t0 + nt - 1;
        const int64_t kv_end = std::min(shape.kv_len, last_pos + 1);
        std::fill(acc.begin(), acc.end(), 0.0f);
        std::fill(row_max.begin(), row_max.end(), -std::numeric_limits<float>::infinity());
        std::fill(row_sum.begin(), row_sum.end(), 0.0f);
        for (int64_t j0 = 0; j0 < kv_end; j0 += kKeyTile) {
          const int64_t nj = std::min(kKeyTile, kv_end - j0);
          for (int64_t t = 0; t < nt; ++t) {
            const int64_t pos = shape.q_start + t0 + t;
            for (int g = 0; g < G; ++g) {
              const int64_t r = t * G + g;
              const float* qr = Q + (t0 + t) * q.stride + (kvh * G + g) * D;
              float* s = &scores[r * kKeyTile];
              float tile_max = -std::numeric_limits<float>::infinity();
              for (int64_t j = 0; j < nj; ++j) {
                const int64_t key = j0 + j;
                s[j] = key <= pos ? dot(qr, K + key * k.stride + kvh * D, D) * shape.scale
                                  : -std::numeric_limits<float>::infinity();
                tile_max = std::max(tile_max, s[j]);
              }
              if (tile_max == -std::numeric_limits<float>::infinity()) continue;  // all masked
              const float new_max = std::max(row_max[r], tile_max);
              const float correction = std::exp(row_max[r] - new_max);
              float* a = &acc[r * D];
              for (int d = 0; d < D; ++d) a[d] *= correction;
              float sum = 0.0f;
              for (int64_t j = 0; j < nj; ++j) {
                const float p = std::exp(s[j] - new_max);
                sum += p;
                if (p == 0.0f) continue;
                const float* vr = V + (j0 + j) * v.stride + kvh * D;
#pragma omp simd
                for (int d = 0; d < D; ++d) a[d] += p * vr[d];
              }
              row_sum[r] = row_sum[r] * correction + sum;
              row_max[r] = new_max;
            }
          }
        }
        for (int64_t t = 0; t < nt; ++t) {
          for (int g = 0; g < G; ++g) {
            const int64_t r = t * G + g;
            float* o = O + (t0 + t) * out.stride + (kvh * G + g) * D;
            const float inv = row_sum[r] > 0.0f ? 1.0f / row_sum[r] : 0.0f;
            for (int d = 0; d < D; ++d) o[d] = acc[r * D + d] * inv;
          }
        }
      }
    }
  }
}

}  // namespace kvo
