// The prefill attention kernel (> 16 rows a KV head): FlashAttention-2 tiles of 64 or 128 rows,
// keys streamed through shared memory in double-buffered tiles of 64 (attention.h has the
// decomposition; attention.cu plans and launches it).
#pragma once
#include "backend/cuda/attention_tiles.cuh"

namespace kvo::cuda::attn {

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
  const KeyRange kr = key_range<kKeys>(p, sv, split, min(row0 + kRows, R) - 1);
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

}  // namespace kvo::cuda::attn
