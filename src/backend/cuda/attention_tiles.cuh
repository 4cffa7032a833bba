// What the CUDA attention kernels share (attention_prefill.cuh, attention_decode.cuh; contract
// in attention.h): the launch parameters and a block's view of its sequence, the key range of a
// flash-decoding split, the cp.async / ldmatrix / mma.sync wrappers, a warp's online-softmax rows
// and the attend step of one key tile, and the merge of softmax partials.
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A 16x16 (row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B 16x8  (col): b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C 16x8       : c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// Q (A) and K (B: K rows are the columns of K^T, k contiguous) fragments come from plain
// ldmatrix, V^T fragments from ldmatrix.trans; the S accumulators of two adjacent 8-key n-tiles
// are exactly the A fragment of P for the P*V mma. A warp owns MT m16 tiles so that every K and V
// fragment it loads from shared memory feeds MT mmas (shared-memory bandwidth per flop / MT).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "backend/cuda/attention.h"

namespace kvo::cuda::attn {

using bf16 = __nv_bfloat16;
constexpr int kKeys = 64;  // keys per shared-memory tile
constexpr float kLog2e = 1.4426950408889634f;

struct Params {
  AttentionArgs a;
  int G;
  int64_t R;            // rows per KV head = q_len * G
  int64_t n_row_tiles;  // per KV head
  int splits;
  int64_t keys_per_split;
  float scale_log2;
  float* ws_o;               // [seqs][splits][KV][R][D] unnormalized partial outputs
  float* ws_ml;              // [seqs][splits][KV][R][2] (running max in log2 units, sum)
  SeqTables seqs;            // count 0: one sequence, a.k / a.v
  uint32_t* split_counters;  // decode kernel: [seqs][KV] splits done, or null (combine kernel)
};

// Sequence blockIdx.z of a batched launch: its rows of q and out, its keys and values and the
// device int32 holding its q_start (a itself when the launch has one sequence).
struct SeqView {
  const bf16 *q, *k, *v;
  bf16* out;
  const int32_t* q_start_at;
};
__device__ __forceinline__ SeqView seq_view(const Params& p) {
  const AttentionArgs& a = p.a;
  const int seq = blockIdx.z;
  const bool batched = p.seqs.count > 0;
  return {a.q + int64_t(seq) * a.q_len * a.q_stride, batched ? p.seqs.keys[seq] : a.k,
          batched ? p.seqs.values[seq] : a.v, a.out + int64_t(seq) * a.q_len * a.out_stride,
          a.q_start_at ? a.q_start_at + seq : nullptr};
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// 2^x in one MUFU op (exp2f adds range fix-ups the softmax does not need); 2^-inf = 0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Keys a split holds: the keys over the splits, rounded up to the kernel's key tile.
__host__ __device__ __forceinline__ int64_t split_keys(int64_t keys, int64_t splits, int tile) {
  return ((keys + splits - 1) / splits + tile - 1) / tile * tile;
}

// The keys [k_begin, k_end) of key split `split` that rows up to `last_row` of a KV head see, and
// the position of the first query (read from device memory for a recorded step: the splits then
// share the keys attended at that step).
struct KeyRange {
  int64_t q_start, k_begin, k_end;
};
template <int kTileKeys>  // the kernel's key tile
__device__ __forceinline__ KeyRange key_range(const Params& p, const SeqView& sv, int split,
                                              int64_t last_row) {
  const AttentionArgs& a = p.a;
  int64_t q_start = a.q_start, kv_len = a.kv_len, keys_per_split = p.keys_per_split;
  if (sv.q_start_at) {
    q_start = *sv.q_start_at;
    kv_len = min(a.kv_len, q_start + a.q_len);
    keys_per_split = split_keys(kv_len, p.splits, kTileKeys);
  }
  const int64_t t_last = min(last_row / p.G, a.q_len - 1);
  const int64_t kv_end = min(kv_len, q_start + t_last + 1);
  const int64_t k_begin = int64_t(split) * keys_per_split;
  return {q_start, k_begin, min(kv_end, k_begin + keys_per_split)};
}

// Online-softmax state of a warp's MT m16 tiles of rows: lane (g, t) holds rows g and g + 8 of
// each tile, output dims dn * 8 + 2t and + 1.
template <int D, int MT>
struct WarpRows {
  float o[MT][D / 8][4];
  float m[MT][2];  // running max (log2 units)
  float l[MT][2];  // this lane's share of the row sum (the other three of its quad hold the rest)

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn)
        o[mt][dn][0] = o[mt][dn][1] = o[mt][dn][2] = o[mt][dn][3] = 0;
      m[mt][0] = m[mt][1] = -INFINITY;
      l[mt][0] = l[mt][1] = 0.0f;
    }
  }
  // The whole sum of row g + 8h of tile mt (every lane of the quad gets it).
  __device__ __forceinline__ float row_sum(int mt, int h) const {
    float sum = l[mt][h];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    return sum;
  }
};

// Attends a warp's rows to one tile of KEYS keys (kt, vt: [KEYS][D + 8] in shared memory, key
// offset key0 within the split); q_frag(mt, kk, a) gives the A fragment of the rows' Q for m16
// tile mt and k-step kk. When `masked`, row r (numbered within the KV head from the warp's first
// row wrow0) sees only the tile's keys of offset < min(q_rel + r / G, n_keys) - key0.
template <int D, int MT, int KEYS, class QFrag>
__device__ __forceinline__ void attend_tile(WarpRows<D, MT>& w, QFrag q_frag, const bf16* kt,
                                            const bf16* vt, bool masked, int wrow0, int q_rel,
                                            int G, int n_keys, int key0, float scale_log2,
                                            int lane) {
  constexpr int S = D + 8;    // padded shared-memory row: conflict-free ldmatrix
  constexpr int KS = D / 16;  // k-steps of Q K^T
  constexpr int DN = D / 8;   // 8-wide n-tiles of the output
  constexpr int NT = KEYS / 8;
  const int g = lane >> 2, t = lane & 3;
  float s[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0;
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    uint32_t qa[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) q_frag(mt, kk, qa[mt]);
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      // matrices: keys np*16 + 0..7 / 8..15 (lane >> 4) x dims kk*16 + 0..7 / 8..15
      uint32_t kb[4];
      ldmatrix_x4(
          kb, kt + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * S + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_bf16(s[mt][2 * np], qa[mt], kb[0], kb[1]);
        mma_bf16(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
      }
    }
  }
  if (masked) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = wrow0 + mt * 16 + g + 8 * h;
        const int lim = min(q_rel + row / G, n_keys) - key0;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          if (nt * 8 + 2 * t >= lim) s[mt][nt][2 * h] = -INFINITY;
          if (nt * 8 + 2 * t + 1 >= lim) s[mt][nt][2 * h + 1] = -INFINITY;
        }
      }
    }
  }
  // Online softmax in the log2 domain, the scale folded into the exponent's FMA. Once the rows'
  // maxima settle (most tiles of a long range) the rescale of o and l would multiply by exactly
  // 1: it runs only when one of the warp's rows moved.
  float m_new[MT][2];
  bool moved = false;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      m_new[mt][h] = fmaxf(w.m[mt][h], mx * scale_log2);
      moved |= m_new[mt][h] != w.m[mt][h];
    }
  }
  if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // 2^-inf = 0 for a row's first keys (o and l are 0 then anyway)
        const float corr = m_new[mt][h] == w.m[mt][h] ? 1.0f : fast_exp2(w.m[mt][h] - m_new[mt][h]);
        w.l[mt][h] *= corr;
#pragma unroll
        for (int dn = 0; dn < DN; ++dn) {
          w.o[mt][dn][2 * h] *= corr;
          w.o[mt][dn][2 * h + 1] *= corr;
        }
      }
    }
  }
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      w.m[mt][h] = m_new[mt][h];
      const float base = w.m[mt][h] == -INFINITY ? 0.0f : w.m[mt][h];  // rows with no key yet
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        s[mt][nt][2 * h] = fast_exp2(fmaf(s[mt][nt][2 * h], scale_log2, -base));
        s[mt][nt][2 * h + 1] = fast_exp2(fmaf(s[mt][nt][2 * h + 1], scale_log2, -base));
        sum += s[mt][nt][2 * h] + s[mt][nt][2 * h + 1];
      }
      w.l[mt][h] += sum;
    }
  }
#pragma unroll
  for (int kb = 0; kb < NT / 2; ++kb) {
    uint32_t pa[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      pa[mt][0] = pack_bf16(s[mt][2 * kb][0], s[mt][2 * kb][1]);
      pa[mt][1] = pack_bf16(s[mt][2 * kb][2], s[mt][2 * kb][3]);
      pa[mt][2] = pack_bf16(s[mt][2 * kb + 1][0], s[mt][2 * kb + 1][1]);
      pa[mt][3] = pack_bf16(s[mt][2 * kb + 1][2], s[mt][2 * kb + 1][3]);
    }
#pragma unroll
    for (int dn = 0; dn < DN; dn += 2) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, vt + (kb * 16 + (lane & 15)) * S + (dn + (lane >> 4)) * 8);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_bf16(w.o[mt][dn], pa[mt], b[0], b[1]);
        mma_bf16(w.o[mt][dn + 1], pa[mt], b[2], b[3]);
      }
    }
  }
}

// Partial softmax results merged: the largest max (log2 units), and the sum and unnormalized
// output rescaled to it.
struct Merged {
  float m, l, o;
  __device__ __forceinline__ float normalized() const { return l > 0.0f ? o / l : 0.0f; }
};
// Merges parts 0..n-1, part i given by m_at(i), l_at(i), o_at(i); parts that saw no key have
// max -inf and weigh 0.
template <class MAt, class LAt, class OAt>
__device__ __forceinline__ Merged merge_parts(int n, MAt m_at, LAt l_at, OAt o_at) {
  Merged x{-INFINITY, 0.0f, 0.0f};
  for (int i = 0; i < n; ++i) x.m = fmaxf(x.m, m_at(i));
  if (x.m == -INFINITY) return x;
  for (int i = 0; i < n; ++i) {
    const float w = fast_exp2(m_at(i) - x.m);
    x.l += w * l_at(i);
    x.o += w * o_at(i);
  }
  return x;
}

// Element (row r, dim d) of KV head kvh's attention for sequence seq, from every split's partial
// (written by other blocks: read from L2).
__device__ __forceinline__ float combined_output(const Params& p, int seq, int kvh, int64_t r,
                                                 int d) {
  const int D = p.a.head_dim;
  auto part = [&](int z) {
    return ((int64_t(seq) * p.splits + z) * p.a.num_kv_heads + kvh) * p.R + r;
  };
  return merge_parts(
             p.splits, [&](int z) { return __ldcg(p.ws_ml + part(z) * 2); },
             [&](int z) { return __ldcg(p.ws_ml + part(z) * 2 + 1); },
             [&](int z) { return __ldcg(p.ws_o + part(z) * D + d); })
      .normalized();
}

// Output row r of KV head kvh's head group: r = t * G + g is query t, head kvh * G + g.
__device__ __forceinline__ bf16* out_row(const Params& p, const SeqView& sv, int kvh, int64_t r) {
  return sv.out + (r / p.G) * p.a.out_stride + int64_t(kvh * p.G + r % p.G) * p.a.head_dim;
}

// A block is kWarps warps x MT m16 tiles = 64 * MT rows of one KV head (and one key split).
constexpr int kWarps = 4;

}  // namespace kvo::cuda::attn
