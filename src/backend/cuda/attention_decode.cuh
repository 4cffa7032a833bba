// The decode attention kernel (<= 16 rows a KV head), with RoPE and the K/V append fused for a
// recorded step (attention.h has the contract; attention.cu plans and launches it).
#pragma once
#include "backend/cuda/attention_tiles.cuh"
#include "backend/cuda/rope.cuh"

namespace kvo::cuda::attn {

// Decode (flash-decoding for <= 16 rows: one query of up to 16 heads a KV head, or a few queries
// of a small group). The flash kernel would compute 64 rows, most of them padding, in one warp
// while its other three waited on the loads; here a block owns one KV head and key split, each
// warp attends its own tiles of 16 keys (w, w + 4, ...) with kDecodeStages of them in flight, and
// the block merges its four warps' softmax states through shared memory. With split_counters,
// the last block of a (sequence, KV head) to finish merges every split's partial (no combine
// launch). It reads q_start_at and the counters from its first instruction on, so it is never
// launched overlapped with its predecessor (overlap.h). Nor does it let its successor launch
// early: an o projection started during the merge set off the launches after it too, which
// held SM slots and made the 8B step 6% slower (bench/RESULTS.md, eighth pass).
constexpr int kDecodeRows = 16;
constexpr int kDecodeKeys = 16;
constexpr int kDecodeStages = 3;
constexpr int kMaxDecodeSplits = 128;  // more than a wave of blocks on any GPU we plan for

// *counter += v, returning the old value: a release (this thread's earlier writes, and those a
// block barrier ordered before them, are visible first) and an acquire at GPU scope.
__device__ __forceinline__ uint32_t atomic_add_acq_rel(uint32_t* counter, uint32_t v) {
  uint32_t old;
  asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], %2;\n"
               : "=r"(old)
               : "l"(counter), "r"(v)
               : "memory");
  return old;
}

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
  const KeyRange kr = key_range<kDecodeKeys>(p, sv, split, R - 1);
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

  // The last of the splits to get here merges them all. Its count is a release and acquire at
  // GPU scope, after a block barrier: every thread's partial is visible device-wide before the
  // count, and read by the last block after it (no full fences).
  __shared__ bool last;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t* counter = p.split_counters + blockIdx.z * a.num_kv_heads + kvh;
    last = atomic_add_acq_rel(counter, 1u) == uint32_t(p.splits - 1);
    if (last) *counter = 0;  // zero for the next launch: launches sharing counters are ordered
  }
  __syncthreads();
  if (!last) return;
  // Four outputs (dims d..d+3 of row r) a thread at a time, an online merge over rounds of
  // kMergeRound splits whose (max, sum) and partials are all loaded at once: one trip to L2 a
  // round.
  constexpr int kMergeRound = 16;
  const int Z = p.splits, KV = a.num_kv_heads;
  const int64_t first = int64_t(blockIdx.z) * Z * KV + kvh;  // split z: partial (first + z * KV)
  for (int i = threadIdx.x; i < R * D / 4; i += kWarps * 32) {
    const int r = i * 4 / D, d = i * 4 % D;
    float m = -INFINITY, l = 0.0f;
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int z0 = 0; z0 < Z; z0 += kMergeRound) {
      float zm[kMergeRound], zl[kMergeRound];
      float4 zo[kMergeRound];
#pragma unroll
      for (int j = 0; j < kMergeRound; ++j) {
        const int64_t part = first + int64_t(z0 + j) * KV;
        const bool ok = z0 + j < Z;
        zm[j] = ok ? __ldcg(p.ws_ml + (part * R + r) * 2) : -INFINITY;
        zl[j] = ok ? __ldcg(p.ws_ml + (part * R + r) * 2 + 1) : 0.0f;
        zo[j] = ok ? __ldcg(reinterpret_cast<const float4*>(p.ws_o + part * R * D) + i)
                   : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
      float mr = m;
#pragma unroll
      for (int j = 0; j < kMergeRound; ++j) mr = fmaxf(mr, zm[j]);
      if (mr == -INFINITY) continue;            // no split so far saw a key
      const float rescale = fast_exp2(m - mr);  // 0 while m is -inf
      l *= rescale;
      o = make_float4(o.x * rescale, o.y * rescale, o.z * rescale, o.w * rescale);
#pragma unroll
      for (int j = 0; j < kMergeRound; ++j) {
        const float wz = fast_exp2(zm[j] - mr);
        l += wz * zl[j];
        o = make_float4(o.x + wz * zo[j].x, o.y + wz * zo[j].y, o.z + wz * zo[j].z,
                        o.w + wz * zo[j].w);
      }
      m = mr;
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(out_row(p, sv, kvh, r) + d);
    out[0] = __floats2bfloat162_rn(o.x * inv, o.y * inv);
    out[1] = __floats2bfloat162_rn(o.z * inv, o.w * inv);
  }
}

}  // namespace kvo::cuda::attn
