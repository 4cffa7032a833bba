// Causal GQA flash attention in bf16 with mma.sync tensor-core tiles; contract in attention.h.
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A 16x16 (row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B 16x8  (col): b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C 16x8       : c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// Q (A) and K (B: K rows are the columns of K^T, k contiguous) fragments come from plain
// ldmatrix, V^T fragments from ldmatrix.trans; the S accumulators of two adjacent 8-key n-tiles
// are exactly the A fragment of P for the P*V mma. A warp owns MT m16 tiles so that every K and V
// fragment it loads from shared memory feeds MT mmas (shared-memory bandwidth per flop / MT).
#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <string>

#include "backend/cuda/attention.h"
#include "backend/cuda/check.h"
#include "backend/cuda/rope.cuh"

namespace kvo::cuda {

[[noreturn]] void throw_message(const char* message);  // cuda_backend.cpp

namespace {

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

// The keys [k_begin, k_end) of key split `split` that rows up to `last_row` of a KV head see, and
// the position of the first query (read from device memory for a recorded step: the splits then
// share the keys attended at that step).
struct KeyRange {
  int64_t q_start, k_begin, k_end;
};
__device__ __forceinline__ KeyRange key_range(const Params& p, const SeqView& sv, int split,
                                              int64_t last_row) {
  const AttentionArgs& a = p.a;
  int64_t q_start = a.q_start, kv_len = a.kv_len, keys_per_split = p.keys_per_split;
  if (sv.q_start_at) {
    q_start = *sv.q_start_at;
    kv_len = min(a.kv_len, q_start + a.q_len);
    keys_per_split = ((kv_len + p.splits - 1) / p.splits + kKeys - 1) / kKeys * kKeys;
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
template <int D, int MT>
constexpr int smem_bytes() {
  return (kWarps * MT * 16 + 4 * kKeys) * (D + 8) * int(sizeof(bf16));  // Q + 2x(K, V)
}

template <int D, int MT>
__global__ void __launch_bounds__(kWarps * 32, 2) flash_kernel(const __grid_constant__ Params p) {
  constexpr int kThreads = kWarps * 32;
  constexpr int kRows = kWarps * MT * 16;
  constexpr int S = D + 8;  // padded shared-memory row: conflict-free ldmatrix
  constexpr int DN = D / 8;
  constexpr int kChunks = D / 8;                 // 16-byte chunks per row
  constexpr int kLoadRows = kThreads / kChunks;  // rows one pass of the block's threads copies
  static_assert(kKeys % kLoadRows == 0 && kRows % kLoadRows == 0);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);  // [kRows][S]
  bf16* Ks = Qs + kRows * S;                     // [2][kKeys][S]
  bf16* Vs = Ks + 2 * kKeys * S;                 // [2][kKeys][S]

  const AttentionArgs& a = p.a;
  const SeqView sv = seq_view(p);
  const int G = p.G;
  const int64_t R = p.R;
  // Blocks start in index order: the longest causal ranges (last row tiles) of every KV head
  // first, so the short ones fill the tail of the grid.
  const int kvh = int(blockIdx.x % unsigned(a.num_kv_heads));
  const int64_t tile = p.n_row_tiles - 1 - int64_t(blockIdx.x / unsigned(a.num_kv_heads));
  const int split = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t row0 = tile * kRows;
  // Keys this block needs: causal limit of its last valid row, then this split's share.
  const KeyRange kr = key_range(p, sv, split, min(row0 + kRows, R) - 1);
  const int n_tiles = kr.k_end > kr.k_begin ? int((kr.k_end - kr.k_begin + kKeys - 1) / kKeys) : 0;

  // This warp's rows: the tiles it computes (w_tiles; rows that are all padding compute none),
  // and the first tile where one of its rows ends (causally or at k_end): only from there on are
  // scores masked. Key offsets within a split and rows fit in int32 (make_plan checks), which
  // keeps the loop's live state small.
  const int wr = warp * MT * 16;  // first row of the warp within the block
  const int64_t wrow0 = row0 + wr;
  const int n_keys = int(max(kr.k_end - kr.k_begin, int64_t{0}));
  const int q_rel = int(kr.q_start - kr.k_begin) + 1;  // row r sees min(q_rel + r / G, n_keys)
  int w_tiles = 0, mask_from = 0;
  if (wrow0 < R) {
    const int64_t w_last = min((wrow0 + MT * 16 - 1) / G, a.q_len - 1);
    const int64_t w_end = min(kr.k_end, kr.q_start + w_last + 1) - kr.k_begin;
    const int64_t first_end = min(kr.k_end, kr.q_start + wrow0 / G + 1) - kr.k_begin;
    w_tiles = w_end > 0 ? int((w_end + kKeys - 1) / kKeys) : 0;
    mask_from = first_end > 0 ? int(first_end / kKeys) : 0;
  }

  // Q tile: row r -> query (row0 + r) / G, head kvh * G + (row0 + r) % G; rows >= R zero.
  const int lr = threadIdx.x / kChunks, lc = (threadIdx.x % kChunks) * 8;
#pragma unroll
  for (int i = 0; i < kRows / kLoadRows; ++i) {
    const int r = lr + i * kLoadRows;
    const int64_t gr = row0 + r;
    const bool ok = gr < R;
    const bf16* src = ok ? sv.q + (gr / G) * a.q_stride + int64_t(kvh * G + gr % G) * D + lc : sv.q;
    cp_async16(Qs + r * S + lc, src, ok);
  }
  // This thread's K/V chunks: rows lr + i * kLoadRows of each tile, from key k_begin on.
  const bf16* kp = sv.k + (kr.k_begin + lr) * a.k_stride + int64_t(kvh) * D + lc;
  const bf16* vp = sv.v + (kr.k_begin + lr) * a.v_stride + int64_t(kvh) * D + lc;
  auto load_kv = [&](int stage, int tile_j) {
    bf16* ks = Ks + stage * kKeys * S + lr * S + lc;
    bf16* vs = Vs + stage * kKeys * S + lr * S + lc;
#pragma unroll
    for (int i = 0; i < kKeys / kLoadRows; ++i) {
      const int rel = tile_j * kKeys + i * kLoadRows;  // keys past this thread's first
      const bool ok = lr + rel < n_keys;
      cp_async16(ks + i * kLoadRows * S, ok ? kp + int64_t{rel} * a.k_stride : sv.k, ok);
      cp_async16(vs + i * kLoadRows * S, ok ? vp + int64_t{rel} * a.v_stride : sv.v, ok);
    }
  };
  if (n_tiles > 0) load_kv(0, 0);
  cp_async_commit();  // one group: Q and the first K/V tile

  WarpRows<D, MT> w;
  w.init();
  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < n_tiles) {
      load_kv(stage ^ 1, j + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (j < w_tiles)
      attend_tile<D, MT, kKeys>(
          w,
          [&](int mt, int kk, uint32_t(&f)[4]) {
            ldmatrix_x4(f, Qs + (wr + mt * 16 + (lane & 15)) * S + kk * 16 + (lane >> 4) * 8);
          },
          Ks + stage * kKeys * S, Vs + stage * kKeys * S, j >= mask_from, int(wrow0), q_rel, G,
          n_keys, j * kKeys, p.scale_log2, lane);
    __syncthreads();  // the next iteration's prefetch overwrites this stage
  }

#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float sum = w.row_sum(mt, h);
      const int64_t r = wrow0 + mt * 16 + g + 8 * h;
      if (r >= R) continue;
      if (p.splits == 1) {
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        bf16* out = out_row(p, sv, kvh, r) + 2 * t;
#pragma unroll
        for (int dn = 0; dn < DN; ++dn)
          *reinterpret_cast<__nv_bfloat162*>(out + dn * 8) =
              __floats2bfloat162_rn(w.o[mt][dn][2 * h] * inv, w.o[mt][dn][2 * h + 1] * inv);
      } else {
        const int64_t wi =
            ((int64_t(blockIdx.z) * p.splits + split) * a.num_kv_heads + kvh) * R + r;
#pragma unroll
        for (int dn = 0; dn < DN; ++dn)
          *reinterpret_cast<float2*>(p.ws_o + wi * D + dn * 8 + 2 * t) =
              make_float2(w.o[mt][dn][2 * h], w.o[mt][dn][2 * h + 1]);
        if (t == 0) {
          p.ws_ml[wi * 2] = w.m[mt][h];
          p.ws_ml[wi * 2 + 1] = sum;
        }
      }
    }
  }
}

// Decode (flash-decoding for <= 16 rows: one query of up to 16 heads a KV head, or a few queries
// of a small group). The flash kernel would compute 64 rows, most of them padding, in one warp
// while its other three waited on the loads; here a block owns one KV head and key split, each
// warp attends its own tiles of 16 keys (w, w + 4, ...) with kDecodeStages of them in flight, and
// the block merges its four warps' softmax states through shared memory. With split_counters,
// the last block of a (sequence, KV head) to finish merges every split's partial (no combine
// launch). It reads q_start_at and the counters from its first instruction on, so it is never
// launched overlapped with its predecessor (overlap.h).
constexpr int kDecodeRows = 16;
constexpr int kDecodeKeys = 16;
constexpr int kDecodeStages = 3;
constexpr int kMaxDecodeSplits = 128;  // the last block's merge keeps 2 floats a split and row
template <int D>
constexpr int decode_smem_bytes() {
  return (kDecodeRows + kWarps * kDecodeStages * 2 * kDecodeKeys) * (D + 8) * int(sizeof(bf16));
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32, 2) decode_kernel(const __grid_constant__ Params p) {
  constexpr int S = D + 8, KT = kDecodeKeys, kChunks = D / 8, DN = D / 8;
  constexpr int kTile = 2 * KT * S;  // a stage: K then V, [KT][S] each
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);  // [kDecodeRows][S]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  bf16* stages = Qs + kDecodeRows * S + warp * kDecodeStages * kTile;  // this warp's

  const AttentionArgs& a = p.a;
  const SeqView sv = seq_view(p);
  const int kvh = blockIdx.x, split = blockIdx.y, G = p.G, R = int(p.R);
  const KeyRange kr = key_range(p, sv, split, R - 1);
  const int n_keys = int(max(kr.k_end - kr.k_begin, int64_t{0}));
  const int q_rel = int(kr.q_start - kr.k_begin) + 1;  // row r sees min(q_rel + r / G, n_keys)
  const int n_tiles = (n_keys + KT - 1) / KT;

  for (int i = threadIdx.x; i < kDecodeRows * kChunks; i += kWarps * 32) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    const bool ok = r < R;
    cp_async16(Qs + r * S + c,
               ok ? sv.q + (r / G) * a.q_stride + int64_t(kvh * G + r % G) * D + c : sv.q, ok);
  }
  cp_async_commit();
  // With RoPE fused (one query a sequence): the rotation at q_start once for the block, then the
  // step's key and value join the tables at that position, written by the block whose keys hold
  // it before it reads them (no other block reads those columns of that row).
  const bool rope = a.rope_inv_freq != nullptr;
  __shared__ float2 angles[D / 2];
  if (rope) {
    for (int i = threadIdx.x; i < D / 2; i += kWarps * 32)
      angles[i] = rope_angle(i, kr.q_start, a.rope_inv_freq);
    __syncthreads();
  }
  if (rope && kr.q_start >= kr.k_begin && kr.q_start < kr.k_end) {
    const int seq = blockIdx.z;
    const bf16* nk = a.new_k + int64_t(seq) * a.new_k_stride + int64_t(kvh) * D;
    const bf16* nv = a.new_v + int64_t(seq) * a.new_v_stride + int64_t(kvh) * D;
    bf16* kd = p.seqs.keys[seq] + kr.q_start * a.k_stride + int64_t(kvh) * D;
    bf16* vd = p.seqs.values[seq] + kr.q_start * a.v_stride + int64_t(kvh) * D;
    for (int i = threadIdx.x; i < D / 2; i += kWarps * 32)
      rope_pair(nk, kd, i, D, angles[i], a.rope_adjacent);
    for (int i = threadIdx.x; i < D; i += kWarps * 32) vd[i] = nv[i];
    __syncthreads();
  }
  const bf16* kp = sv.k + kr.k_begin * a.k_stride + int64_t(kvh) * D;
  const bf16* vp = sv.v + kr.k_begin * a.v_stride + int64_t(kvh) * D;
  // The warp's i-th tile into stage i % kDecodeStages; past its last tile an empty group, so the
  // wait below always counts kDecodeStages groups.
  auto load_tile = [&](int i) {
    const int j = warp + i * kWarps;
    if (j < n_tiles) {
      bf16* ks = stages + (i % kDecodeStages) * kTile;
      for (int c = lane; c < KT * kChunks; c += 32) {
        const int key = c / kChunks, col = (c % kChunks) * 8, rel = j * KT + key;
        const bool ok = rel < n_keys;
        cp_async16(ks + key * S + col, ok ? kp + int64_t{rel} * a.k_stride + col : sv.k, ok);
        cp_async16(ks + (KT + key) * S + col, ok ? vp + int64_t{rel} * a.v_stride + col : sv.v, ok);
      }
    }
    cp_async_commit();
  };
#pragma unroll
  for (int i = 0; i < kDecodeStages; ++i) load_tile(i);
  cp_async_wait<kDecodeStages>();  // this thread's part of Q
  __syncthreads();
  if (rope) {  // every row is the one query, at q_start
    for (int i = threadIdx.x; i < R * (D / 2); i += kWarps * 32) {
      bf16* row = Qs + (i / (D / 2)) * S;
      rope_pair(row, row, i % (D / 2), D, angles[i % (D / 2)], a.rope_adjacent);
    }
    __syncthreads();
  }
  uint32_t qa[D / 16][4];  // Q's A fragments, held for every tile
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    ldmatrix_x4(qa[kk], Qs + (lane & 15) * S + kk * 16 + (lane >> 4) * 8);

  WarpRows<D, 1> w;
  w.init();
  const int unmasked = min(q_rel, n_keys);  // keys every row sees
  const int my_tiles = n_tiles > warp ? (n_tiles - warp + kWarps - 1) / kWarps : 0;
  for (int i = 0; i < my_tiles; ++i) {
    cp_async_wait<kDecodeStages - 1>();
    __syncwarp();  // the other lanes' copies of the tile too
    const bf16* ks = stages + (i % kDecodeStages) * kTile;
    const int key0 = (warp + i * kWarps) * KT;
    attend_tile<D, 1, KT>(
        w,
        [&](int, int kk, uint32_t(&f)[4]) {
#pragma unroll
          for (int e = 0; e < 4; ++e) f[e] = qa[kk][e];
        },
        ks, ks + KT * S, key0 + KT > unmasked, 0, q_rel, G, n_keys, key0, p.scale_log2, lane);
    __syncwarp();  // every lane is done with the stage before it is refilled
    load_tile(i + kDecodeStages);
  }

  // The four warps' states through shared memory (the stages are free once every warp is done).
  __syncthreads();
  float* part_o = reinterpret_cast<float*>(Qs + kDecodeRows * S);  // [kWarps][16][D]
  float* part_m = part_o + kWarps * kDecodeRows * D;               // [kWarps][16]
  float* part_l = part_m + kWarps * kDecodeRows;                   // [kWarps][16]
  static_assert((kWarps * kDecodeRows * (D + 2)) * 4 <= kWarps * kDecodeStages * kTile * 2);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = warp * kDecodeRows + g + 8 * h;
    const float sum = w.row_sum(0, h);
    if (t == 0) {
      part_m[r] = w.m[0][h];
      part_l[r] = sum;
    }
#pragma unroll
    for (int dn = 0; dn < DN; ++dn)
      *reinterpret_cast<float2*>(part_o + r * D + dn * 8 + 2 * t) =
          make_float2(w.o[0][dn][2 * h], w.o[0][dn][2 * h + 1]);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < R * D; i += kWarps * 32) {
    const int r = i / D, d = i % D;
    const Merged x = merge_parts(
        kWarps, [&](int k) { return part_m[k * kDecodeRows + r]; },
        [&](int k) { return part_l[k * kDecodeRows + r]; },
        [&](int k) { return part_o[(k * kDecodeRows + r) * D + d]; });
    if (p.splits == 1) {
      out_row(p, sv, kvh, r)[d] = __float2bfloat16_rn(x.normalized());
    } else {
      const int64_t wi = ((int64_t(blockIdx.z) * p.splits + split) * a.num_kv_heads + kvh) * R + r;
      p.ws_o[wi * D + d] = x.o;
      if (d == 0) {
        p.ws_ml[wi * 2] = x.m;
        p.ws_ml[wi * 2 + 1] = x.l;
      }
    }
  }
  if (p.splits == 1 || !p.split_counters) return;

  // The last of the splits to get here merges them all (the classic threadfence reduction: each
  // block's partial is visible device-wide before its count is).
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t* counter = p.split_counters + blockIdx.z * a.num_kv_heads + kvh;
    last = atomicAdd(counter, 1u) == uint32_t(p.splits - 1);
    if (last) *counter = 0;  // zero for the next launch: launches sharing counters are ordered
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  // Every split's (max, sum) of the rows, then their weights (one thread a row), then the outputs.
  const int Z = p.splits, KV = a.num_kv_heads;
  const int64_t first = int64_t(blockIdx.z) * Z * KV + kvh;  // split z: partial (first + z * KV)
  static_assert((2 * kMaxDecodeSplits + 1) * kDecodeRows * 4 <= kWarps * kDecodeStages * kTile * 2);
  float* split_w = part_o;                     // [Z][kDecodeRows] max, then weight
  float* split_l = split_w + Z * kDecodeRows;  // [Z][kDecodeRows]
  float* row_inv = split_l + Z * kDecodeRows;  // [kDecodeRows] 1 / merged sum
  for (int i = threadIdx.x; i < Z * R; i += kWarps * 32) {
    const int z = i / R, r = i % R;
    const int64_t wi = (first + int64_t(z) * KV) * R + r;
    split_w[z * kDecodeRows + r] = __ldcg(p.ws_ml + wi * 2);
    split_l[z * kDecodeRows + r] = __ldcg(p.ws_ml + wi * 2 + 1);
  }
  __syncthreads();
  if (threadIdx.x < R) {
    const int r = threadIdx.x;
    const Merged x = merge_parts(
        Z, [&](int z) { return split_w[z * kDecodeRows + r]; },
        [&](int z) { return split_l[z * kDecodeRows + r]; }, [](int) { return 0.0f; });
    for (int z = 0; z < Z; ++z) {
      float& wz = split_w[z * kDecodeRows + r];
      wz = x.m == -INFINITY ? 0.0f : fast_exp2(wz - x.m);
    }
    row_inv[r] = x.l > 0.0f ? 1.0f / x.l : 0.0f;
  }
  __syncthreads();
  // Four outputs (dims d..d+3 of row r) a thread at a time, eight splits' loads in flight.
  for (int i = threadIdx.x; i < R * D / 4; i += kWarps * 32) {
    const int r = i * 4 / D, d = i * 4 % D;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
    for (int z = 0; z < Z; ++z) {
      const float wz = split_w[z * kDecodeRows + r];
      const float4 o =
          __ldcg(reinterpret_cast<const float4*>(p.ws_o + (first + int64_t(z) * KV) * R * D) + i);
      acc.x += wz * o.x;
      acc.y += wz * o.y;
      acc.z += wz * o.z;
      acc.w += wz * o.w;
    }
    const float inv = row_inv[r];
    __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(out_row(p, sv, kvh, r) + d);
    out[0] = __floats2bfloat162_rn(acc.x * inv, acc.y * inv);
    out[1] = __floats2bfloat162_rn(acc.z * inv, acc.w * inv);
  }
}

// One block per (row, KV head), one thread per output dim: merges the splits' partials.
__global__ void combine_kernel(const __grid_constant__ Params p) {
  const int64_t r = blockIdx.x;
  const int kvh = blockIdx.y;
  bf16* out = out_row(p, seq_view(p), kvh, r);
  for (int d = threadIdx.x; d < p.a.head_dim; d += blockDim.x)
    out[d] = __float2bfloat16_rn(combined_output(p, blockIdx.z, kvh, r, d));
}

// m16 tiles per warp: decode and short chunks (<= 64 rows) use one so few rows are padding;
// longer ranges use two, halving the shared-memory traffic per flop (on Llama-3.1-8B heads
// 1.2-1.35x the throughput of one: bench/RESULTS.md).
int tiles_per_warp(int64_t rows) {
  return rows > 64 ? 2 : 1;
}

struct Plan {
  int G = 1;
  bool decode = false;  // <= 16 rows a KV head: decode_kernel
  int mt = 1;           // flash_kernel: m16 tiles per warp
  int64_t R = 0, n_row_tiles = 0, keys_per_split = 0;
  int splits = 1;
};

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// num_seqs: sequences of a batched launch (their keys are checked by the caller).
Plan make_plan(const AttentionArgs& a, int num_sms, int force_splits, int num_seqs) {
  if (a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0)
    throw_message("CUDA attention: num_heads must be a multiple of num_kv_heads");
  if (a.head_dim != 32 && a.head_dim != 64 && a.head_dim != 128)
    throw_message("CUDA attention: head_dim must be 32, 64 or 128");
  if (!(a.scale > 0.0f)) throw_message("CUDA attention: the score scale must be positive");
  if (num_seqs < 1 || num_seqs > kMaxSeqs)
    throw_message(
        ("CUDA attention: 1 to " + std::to_string(kMaxSeqs) + " sequences a launch").c_str());
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v) || !aligned16(a.out) ||
      a.q_stride % 8 || a.k_stride % 8 || a.v_stride % 8 || a.out_stride % 2)
    throw_message("CUDA attention: rows must be 16-byte aligned (strides multiple of 8)");
  Plan pl;
  pl.G = a.num_heads / a.num_kv_heads;
  pl.R = a.q_len * pl.G;
  if (pl.R >= INT32_MAX || a.kv_len >= INT32_MAX || a.q_start >= INT32_MAX)
    throw_message("CUDA attention: rows (q_len * group size) and positions must be below 2^31");
  pl.decode = pl.R <= kDecodeRows;
  pl.mt = tiles_per_warp(pl.R);
  const int rows = kWarps * pl.mt * 16;
  pl.n_row_tiles = (pl.R + rows - 1) / rows;
  const int64_t kv = std::max<int64_t>(a.kv_len, 1);
  int splits = 1;
  if (force_splits > 0) {
    splits = force_splits;
  } else {
    const int64_t blocks = pl.n_row_tiles * a.num_kv_heads * num_seqs;
    // Split long key ranges into as many parts as one wave holds (decode: one block an SM; the
    // flash kernel: two), each split keeping >= 256 keys so that its fixed cost (its Q load and
    // first tiles, the merges) is spread over enough keys. H200, Llama-3.1-8B heads, batch 1
    // (bench/RESULTS.md): the decode kernel took 10.2 us at 4K keys (16 splits), 12.2 with
    // 128-key splits; 40.0 us at 32K, 42.0 with two blocks an SM. Rounded down: a few blocks
    // past the wave would run as a second wave of their own (7 sequences of 128K keys: 280
    // flash blocks of 264 slots took 1.2x as long as one sequence at a time).
    if (blocks < num_sms && a.kv_len >= 512) {
      const int64_t want = (pl.decode ? 1 : 2) * int64_t(num_sms) / blocks;
      splits = int(
          std::min<int64_t>({want, (a.kv_len + 255) / 256, pl.decode ? kMaxDecodeSplits : 256}));
    }
  }
  if (pl.decode) splits = std::min(splits, kMaxDecodeSplits);  // force_splits too
  pl.keys_per_split = ((kv + splits - 1) / splits + kKeys - 1) / kKeys * kKeys;
  pl.splits = int((kv + pl.keys_per_split - 1) / pl.keys_per_split);
  if (force_splits > 0) pl.splits = std::max(pl.splits, 1);
  return pl;
}

int launch_seqs(const Params& p) {
  return std::max(p.seqs.count, 1);
}

// Launches kKernel over (x blocks, splits, sequences) with kSmem bytes of dynamic shared memory.
template <auto kKernel, int kSmem>
void launch(unsigned x, const Params& p, cudaStream_t stream) {
  static bool configured = false;  // per kernel: the attribute is per function
  if (!configured) {
    KVO_CUDA(cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    configured = true;
  }
  const dim3 grid(x, static_cast<unsigned>(p.splits), static_cast<unsigned>(launch_seqs(p)));
  kKernel<<<grid, kWarps * 32, kSmem, stream>>>(p);
  KVO_CUDA_LAUNCHED("attention kernel");
}

template <int D>
void launch(const Params& p, const Plan& pl, cudaStream_t stream) {
  const auto x = static_cast<unsigned>(p.n_row_tiles * p.a.num_kv_heads);
  if (pl.decode)
    launch<decode_kernel<D>, decode_smem_bytes<D>()>(x, p, stream);
  else if (pl.mt == 2)
    launch<flash_kernel<D, 2>, smem_bytes<D, 2>()>(x, p, stream);
  else
    launch<flash_kernel<D, 1>, smem_bytes<D, 1>()>(x, p, stream);
}

}  // namespace

bool attention_fuses_rope(const AttentionArgs& a) {
  return a.q_len == 1 && a.num_kv_heads > 0 && a.num_heads / a.num_kv_heads <= kDecodeRows;
}

int64_t attention_workspace_bytes(const AttentionArgs& a, int num_sms, int force_splits,
                                  int num_seqs) {
  const Plan pl = make_plan(a, num_sms, force_splits, num_seqs);
  if (pl.splits == 1) return 0;
  return int64_t(num_seqs) * pl.splits * a.num_kv_heads * pl.R * (a.head_dim + 2) *
         int64_t(sizeof(float));
}

void attention(const AttentionArgs& a, void* workspace, int num_sms, cudaStream_t stream,
               int force_splits, const SeqTables* seqs) {
  if (a.q_len == 0) return;
  const int n_seqs = seqs ? seqs->count : 1;
  const Plan pl = make_plan(a, num_sms, force_splits, n_seqs);
  if (a.rope_inv_freq && !(pl.decode && a.q_len == 1 && seqs && a.q_start_at && a.new_k && a.new_v))
    throw_message("CUDA attention: RoPE is fused only into batched decode (one query a sequence)");
  Params p{a,       pl.G,   pl.R, pl.n_row_tiles, pl.splits, pl.keys_per_split, a.scale * kLog2e,
           nullptr, nullptr};
  if (seqs) {
    for (int s = 0; s < n_seqs; ++s)
      if (!aligned16(seqs->keys[s]) || !aligned16(seqs->values[s]))
        throw_message("CUDA attention: a sequence's key or value table is not 16-byte aligned");
    p.seqs = *seqs;
  }
  if (pl.splits > 1) {
    if (!workspace) throw_message("CUDA attention: split-K needs a workspace");
    p.ws_o = static_cast<float*>(workspace);
    p.ws_ml = p.ws_o + int64_t(n_seqs) * pl.splits * a.num_kv_heads * pl.R * a.head_dim;
    if (pl.decode && a.split_counter_slots >= int64_t(n_seqs) * a.num_kv_heads)
      p.split_counters = a.split_counters;
  }
  switch (a.head_dim) {
    case 32:
      launch<32>(p, pl, stream);
      break;
    case 64:
      launch<64>(p, pl, stream);
      break;
    default:
      launch<128>(p, pl, stream);
      break;
  }
  if (pl.splits > 1 && !p.split_counters) {
    const dim3 grid(static_cast<unsigned>(pl.R), static_cast<unsigned>(a.num_kv_heads),
                    static_cast<unsigned>(n_seqs));
    combine_kernel<<<grid, a.head_dim, 0, stream>>>(p);
    KVO_CUDA_LAUNCHED("combine_kernel");
  }
}

}  // namespace kvo::cuda
