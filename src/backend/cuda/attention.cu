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
  float* ws_o;     // [seqs][splits][KV][R][D] unnormalized partial outputs
  float* ws_ml;    // [seqs][splits][KV][R][2] (running max in log2 units, sum)
  SeqTables seqs;  // count 0: one sequence, a.k / a.v
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
  constexpr int S = D + 8;    // padded shared-memory row: conflict-free ldmatrix
  constexpr int KS = D / 16;  // k-steps of Q K^T
  constexpr int DN = D / 8;   // 8-wide n-tiles of the output
  constexpr int NT = kKeys / 8;
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

  // The positions, from device memory for a recorded step (then the splits share its keys).
  int64_t q_start = a.q_start, kv_len = a.kv_len, keys_per_split = p.keys_per_split;
  if (sv.q_start_at) {
    q_start = *sv.q_start_at;
    kv_len = min(a.kv_len, q_start + a.q_len);
    keys_per_split = ((kv_len + p.splits - 1) / p.splits + kKeys - 1) / kKeys * kKeys;
  }
  // Keys this block needs: causal limit of its last valid row, then this split's share.
  const int64_t t_last = min((row0 + kRows - 1) / G, a.q_len - 1);
  const int64_t kv_end = min(kv_len, q_start + t_last + 1);
  const int64_t k_begin = int64_t(split) * keys_per_split;
  const int64_t k_end = min(kv_end, k_begin + keys_per_split);
  const int n_tiles = k_end > k_begin ? int((k_end - k_begin + kKeys - 1) / kKeys) : 0;

  // This warp's rows: the tiles it computes (w_tiles; rows that are all padding compute none),
  // and the first tile where one of its rows ends (causally or at k_end): only from there on are
  // scores masked. Key offsets within a split and rows fit in int32 (make_plan checks), which
  // keeps the loop's live state small.
  const int wr = warp * MT * 16;  // first row of the warp within the block
  const int64_t wrow0 = row0 + wr;
  const int n_keys = int(max(k_end - k_begin, int64_t{0}));
  const int q_rel = int(q_start - k_begin) + 1;  // row r sees min(q_rel + r / G, n_keys) keys
  int w_tiles = 0, mask_from = 0;
  if (wrow0 < R) {
    const int64_t w_last = min((wrow0 + MT * 16 - 1) / G, a.q_len - 1);
    const int64_t w_end = min(k_end, q_start + w_last + 1) - k_begin;
    const int64_t first_end = min(k_end, q_start + wrow0 / G + 1) - k_begin;
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
  const bf16* kp = sv.k + (k_begin + lr) * a.k_stride + int64_t(kvh) * D + lc;
  const bf16* vp = sv.v + (k_begin + lr) * a.v_stride + int64_t(kvh) * D + lc;
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

  float o[MT][DN][4];
  float m[MT][2], l[MT][2];  // per row (m16 tile, g / g+8): running max (log2 units), sum
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int dn = 0; dn < DN; ++dn) o[mt][dn][0] = o[mt][dn][1] = o[mt][dn][2] = o[mt][dn][3] = 0;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
  }

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
    if (j < w_tiles) {
      const bf16* kt = Ks + stage * kKeys * S;
      const bf16* vt = Vs + stage * kKeys * S;
      float s[MT][NT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0;
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        uint32_t qa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
          ldmatrix_x4(qa[mt], Qs + (wr + mt * 16 + (lane & 15)) * S + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
          // matrices: keys np*16 + 0..7 / 8..15 (lane >> 4) x dims kk*16 + 0..7 / 8..15
          uint32_t kb[4];
          ldmatrix_x4(kb, kt + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * S + kk * 16 +
                              ((lane >> 3) & 1) * 8);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            mma_bf16(s[mt][2 * np], qa[mt], kb[0], kb[1]);
            mma_bf16(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
          }
        }
      }
      if (j >= mask_from) {  // key offsets >= lim within this tile are not seen by the row
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int row = int(wrow0) + mt * 16 + g + 8 * h;
            const int lim = min(q_rel + row / G, n_keys) - j * kKeys;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              if (nt * 8 + 2 * t >= lim) s[mt][nt][2 * h] = -INFINITY;
              if (nt * 8 + 2 * t + 1 >= lim) s[mt][nt][2 * h + 1] = -INFINITY;
            }
          }
        }
      }
      // Online softmax in the log2 domain, the scale folded into the exponent's FMA. Once the
      // rows' maxima settle (most tiles of a long range) the rescale of o and l would multiply by
      // exactly 1: it runs only when one of the warp's rows moved.
      float m_new[MT][2];
      bool moved = false;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float mx = -INFINITY;
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
            mx = fmaxf(mx, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          m_new[mt][h] = fmaxf(m[mt][h], mx * p.scale_log2);
          moved |= m_new[mt][h] != m[mt][h];
        }
      }
      if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            // 2^-inf = 0 for a row's first keys (o and l are 0 then anyway)
            const float corr = m_new[mt][h] == m[mt][h] ? 1.0f : fast_exp2(m[mt][h] - m_new[mt][h]);
            l[mt][h] *= corr;
#pragma unroll
            for (int dn = 0; dn < DN; ++dn) {
              o[mt][dn][2 * h] *= corr;
              o[mt][dn][2 * h + 1] *= corr;
            }
          }
        }
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          m[mt][h] = m_new[mt][h];
          const float base = m[mt][h] == -INFINITY ? 0.0f : m[mt][h];  // rows with no key yet
          float sum = 0.0f;
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            s[mt][nt][2 * h] = fast_exp2(fmaf(s[mt][nt][2 * h], p.scale_log2, -base));
            s[mt][nt][2 * h + 1] = fast_exp2(fmaf(s[mt][nt][2 * h + 1], p.scale_log2, -base));
            sum += s[mt][nt][2 * h] + s[mt][nt][2 * h + 1];
          }
          l[mt][h] += sum;
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
            mma_bf16(o[mt][dn], pa[mt], b[0], b[1]);
            mma_bf16(o[mt][dn + 1], pa[mt], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // the next iteration's prefetch overwrites this stage
  }

#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = l[mt][h];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int64_t r = wrow0 + mt * 16 + g + 8 * h;
      if (r >= R) continue;
      if (p.splits == 1) {
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        bf16* out = sv.out + (r / G) * a.out_stride + int64_t(kvh * G + r % G) * D + 2 * t;
#pragma unroll
        for (int dn = 0; dn < DN; ++dn)
          *reinterpret_cast<__nv_bfloat162*>(out + dn * 8) =
              __floats2bfloat162_rn(o[mt][dn][2 * h] * inv, o[mt][dn][2 * h + 1] * inv);
      } else {
        const int64_t wi =
            ((int64_t(blockIdx.z) * p.splits + split) * a.num_kv_heads + kvh) * R + r;
#pragma unroll
        for (int dn = 0; dn < DN; ++dn)
          *reinterpret_cast<float2*>(p.ws_o + wi * D + dn * 8 + 2 * t) =
              make_float2(o[mt][dn][2 * h], o[mt][dn][2 * h + 1]);
        if (t == 0) {
          p.ws_ml[wi * 2] = m[mt][h];
          p.ws_ml[wi * 2 + 1] = sum;
        }
      }
    }
  }
}

// One block per (row, KV head), one thread per output dim: merges the splits' partials.
__global__ void combine_kernel(const __grid_constant__ Params p) {
  const AttentionArgs& a = p.a;
  const int64_t r = blockIdx.x;
  const int kvh = blockIdx.y, D = a.head_dim;
  const int64_t first_split = int64_t(blockIdx.z) * p.splits;  // of this sequence
  float M = -INFINITY;
  for (int z = 0; z < p.splits; ++z)
    M = fmaxf(M, p.ws_ml[(((first_split + z) * a.num_kv_heads + kvh) * p.R + r) * 2]);
  bf16* out = seq_view(p).out + (r / p.G) * a.out_stride + int64_t(kvh * p.G + r % p.G) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f, L = 0.0f;
    if (M != -INFINITY) {
      for (int z = 0; z < p.splits; ++z) {
        const int64_t base = ((first_split + z) * a.num_kv_heads + kvh) * p.R + r;
        const float w = exp2f(p.ws_ml[base * 2] - M);  // 0 for empty splits (max -inf)
        acc += w * p.ws_o[base * D + d];
        L += w * p.ws_ml[base * 2 + 1];
      }
    }
    out[d] = __float2bfloat16_rn(L > 0.0f ? acc / L : 0.0f);
  }
}

// m16 tiles per warp: decode and short chunks (<= 64 rows) use one so few rows are padding;
// longer ranges use two, halving the shared-memory traffic per flop (on Llama-3.1-8B heads
// 1.2-1.35x the throughput of one: bench/RESULTS.md).
int tiles_per_warp(int64_t rows) {
  return rows > 64 ? 2 : 1;
}

struct Plan {
  int G = 1;
  int mt = 1;  // m16 tiles per warp
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
  pl.mt = tiles_per_warp(pl.R);
  const int rows = kWarps * pl.mt * 16;
  pl.n_row_tiles = (pl.R + rows - 1) / rows;
  const int64_t kv = std::max<int64_t>(a.kv_len, 1);
  int splits = 1;
  if (force_splits > 0) {
    splits = force_splits;
  } else {
    const int64_t blocks = pl.n_row_tiles * a.num_kv_heads * num_seqs;
    // Split long key ranges into as many parts as one wave of ~2 blocks per SM holds, each
    // split keeping >= 256 keys (four tiles: the decode step of one sequence then spreads over
    // every SM, and a split's fixed cost, its Q load and first tile, is spread over enough keys;
    // H200, Llama-3.1-8B heads, 4K keys: 11.6 us, 12.1 with 128-key splits). Rounded down: a
    // few blocks past the wave would run as a second wave of their own (7 sequences of 128K
    // keys: 280 blocks of 264 slots took 1.2x as long as one sequence at a time).
    if (blocks < num_sms && a.kv_len >= 512) {
      const int64_t want = 2 * int64_t(num_sms) / blocks;
      splits = int(std::min<int64_t>({want, (a.kv_len + 255) / 256, 256}));
    }
  }
  pl.keys_per_split = ((kv + splits - 1) / splits + kKeys - 1) / kKeys * kKeys;
  pl.splits = int((kv + pl.keys_per_split - 1) / pl.keys_per_split);
  if (force_splits > 0) pl.splits = std::max(pl.splits, 1);
  return pl;
}

int launch_seqs(const Params& p) {
  return std::max(p.seqs.count, 1);
}

template <int D, int MT>
void launch(const Params& p, cudaStream_t stream) {
  constexpr int smem = smem_bytes<D, MT>();
  static bool configured = false;  // per instantiation; the attribute is per function
  if (!configured) {
    KVO_CUDA(cudaFuncSetAttribute(flash_kernel<D, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  smem));
    configured = true;
  }
  const dim3 grid(static_cast<unsigned>(p.n_row_tiles * p.a.num_kv_heads),
                  static_cast<unsigned>(p.splits), static_cast<unsigned>(launch_seqs(p)));
  flash_kernel<D, MT><<<grid, kWarps * 32, smem, stream>>>(p);
  KVO_CUDA_LAUNCHED("flash_kernel");
}

template <int D>
void launch(const Params& p, int mt, cudaStream_t stream) {
  if (mt == 2)
    launch<D, 2>(p, stream);
  else
    launch<D, 1>(p, stream);
}

}  // namespace

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
  }
  switch (a.head_dim) {
    case 32:
      launch<32>(p, pl.mt, stream);
      break;
    case 64:
      launch<64>(p, pl.mt, stream);
      break;
    default:
      launch<128>(p, pl.mt, stream);
      break;
  }
  if (pl.splits > 1) {
    const dim3 grid(static_cast<unsigned>(pl.R), static_cast<unsigned>(a.num_kv_heads),
                    static_cast<unsigned>(n_seqs));
    combine_kernel<<<grid, a.head_dim, 0, stream>>>(p);
    KVO_CUDA_LAUNCHED("combine_kernel");
  }
}

}  // namespace kvo::cuda
