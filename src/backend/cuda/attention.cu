// Causal GQA flash attention in bf16 with mma.sync tensor-core tiles; contract in attention.h.
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A 16x16 (row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B 16x8  (col): b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C 16x8       : c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// S = Q K^T takes B straight from K rows in shared memory (k contiguous); the S accumulators of
// two adjacent 8-key n-tiles are exactly the A fragment of P for the next mma; V^T fragments
// come from ldmatrix.trans.
#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "backend/cuda/attention.h"
#include "backend/cuda/check.h"

namespace kvo::cuda {

[[noreturn]] void throw_message(const char* message);  // cuda_backend.cpp

namespace {

using bf16 = __nv_bfloat16;
constexpr int kRows = 64;  // rows (query, group head) per block
constexpr int kKeys = 64;  // keys per shared-memory tile
constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

struct Params {
  AttentionArgs a;
  int G;
  int64_t R;  // rows per KV head = q_len * G
  int splits;
  int64_t keys_per_split;
  float scale_log2;
  float* ws_o;   // [splits][KV][R][D] unnormalized partial outputs
  float* ws_ml;  // [splits][KV][R][2] (running max in log2 units, sum)
};

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

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t lds32(const bf16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

template <int D>
__global__ void __launch_bounds__(kThreads) flash_kernel(Params p) {
  constexpr int S = D + 8;    // padded shared-memory row: conflict-free fragment loads
  constexpr int KS = D / 16;  // k-steps of Q K^T
  constexpr int DN = D / 8;   // 8-wide n-tiles of the output
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);  // [kRows][S]
  bf16* Ks = Qs + kRows * S;                     // [2][kKeys][S]
  bf16* Vs = Ks + 2 * kKeys * S;                 // [2][kKeys][S]

  const AttentionArgs& a = p.a;
  const int G = p.G;
  const int64_t R = p.R;
  const int tile = gridDim.x - 1 - blockIdx.x;  // longest causal ranges first
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t row0 = int64_t(tile) * kRows;

  // The positions, from device memory for a recorded step (then the splits share its keys).
  int64_t q_start = a.q_start, kv_len = a.kv_len, keys_per_split = p.keys_per_split;
  if (a.q_start_at) {
    q_start = *a.q_start_at;
    kv_len = min(a.kv_len, q_start + a.q_len);
    keys_per_split = ((kv_len + p.splits - 1) / p.splits + kKeys - 1) / kKeys * kKeys;
  }
  // Keys this block needs: causal limit of its last valid row, then this split's share.
  const int64_t t_last = min((row0 + kRows - 1) / G, a.q_len - 1);
  const int64_t kv_end = min(kv_len, q_start + t_last + 1);
  const int64_t k_begin = int64_t(split) * keys_per_split;
  const int64_t k_end = min(kv_end, k_begin + keys_per_split);
  const int n_tiles = k_end > k_begin ? int((k_end - k_begin + kKeys - 1) / kKeys) : 0;

  // Q tile: row r -> query (row0 + r) / G, head kvh * G + (row0 + r) % G; rows >= R zero.
  for (int c = threadIdx.x; c < kRows * (D / 8); c += kThreads) {
    const int r = c / (D / 8), col = (c % (D / 8)) * 8;
    const int64_t gr = row0 + r;
    const bool ok = gr < R;
    const bf16* src = ok ? a.q + (gr / G) * a.q_stride + int64_t(kvh * G + gr % G) * D + col : a.q;
    cp_async16(Qs + r * S + col, src, ok);
  }
  auto load_kv = [&](int stage, int64_t kstart) {
    bf16* ks = Ks + stage * kKeys * S;
    bf16* vs = Vs + stage * kKeys * S;
    for (int c = threadIdx.x; c < kKeys * (D / 8); c += kThreads) {
      const int r = c / (D / 8), col = (c % (D / 8)) * 8;
      const int64_t key = kstart + r;
      const bool ok = key < k_end;
      const int64_t off_k = ok ? key * a.k_stride + int64_t(kvh) * D + col : 0;
      const int64_t off_v = ok ? key * a.v_stride + int64_t(kvh) * D + col : 0;
      cp_async16(ks + r * S + col, a.k + off_k, ok);
      cp_async16(vs + r * S + col, a.v + off_v, ok);
    }
  };
  if (n_tiles > 0) load_kv(0, k_begin);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  const bool active = row0 + warp * 16 < R;  // warps whose rows are all padding skip the math
  uint32_t qf[KS][4];
  {
    const bf16* qw = Qs + warp * 16 * S;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      qf[ks][0] = lds32(qw + g * S + ks * 16 + 2 * t);
      qf[ks][1] = lds32(qw + (g + 8) * S + ks * 16 + 2 * t);
      qf[ks][2] = lds32(qw + g * S + ks * 16 + 8 + 2 * t);
      qf[ks][3] = lds32(qw + (g + 8) * S + ks * 16 + 8 + 2 * t);
    }
  }
  const int64_t r0 = row0 + warp * 16 + g, r1 = r0 + 8;
  const int64_t pos0 = q_start + r0 / G, pos1 = q_start + r1 / G;

  float o[DN][4];
#pragma unroll
  for (int dn = 0; dn < DN; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < n_tiles) {
      load_kv(stage ^ 1, k_begin + int64_t(j + 1) * kKeys);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (active) {
      const bf16* ks = Ks + stage * kKeys * S;
      const bf16* vs = Vs + stage * kKeys * S;
      const int64_t kbase = k_begin + int64_t(j) * kKeys;
      float s[kKeys / 8][4];
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
      for (int ks_ = 0; ks_ < KS; ++ks_) {
#pragma unroll
        for (int nt = 0; nt < kKeys / 8; ++nt) {
          const bf16* kr = ks + (nt * 8 + g) * S + ks_ * 16 + 2 * t;
          mma_bf16(s[nt], qf[ks_], lds32(kr), lds32(kr + 8));
        }
      }
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t key = kbase + nt * 8 + 2 * t + e;
          const bool in = key < k_end;
          s[nt][e] = (in && key <= pos0) ? s[nt][e] * p.scale_log2 : -INFINITY;
          s[nt][2 + e] = (in && key <= pos1) ? s[nt][2 + e] * p.scale_log2 : -INFINITY;
          mx0 = fmaxf(mx0, s[nt][e]);
          mx1 = fmaxf(mx1, s[nt][2 + e]);
        }
      }
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
      const float u0 = n0 == -INFINITY ? 0.0f : n0, u1 = n1 == -INFINITY ? 0.0f : n1;
      const float c0 = exp2f(m0 - u0), c1 = exp2f(m1 - u1);
      m0 = n0;
      m1 = n1;
      l0 *= c0;
      l1 *= c1;
#pragma unroll
      for (int dn = 0; dn < DN; ++dn) {
        o[dn][0] *= c0;
        o[dn][1] *= c0;
        o[dn][2] *= c1;
        o[dn][3] *= c1;
      }
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
        s[nt][0] = exp2f(s[nt][0] - u0);
        s[nt][1] = exp2f(s[nt][1] - u0);
        s[nt][2] = exp2f(s[nt][2] - u1);
        s[nt][3] = exp2f(s[nt][3] - u1);
        l0 += s[nt][0] + s[nt][1];
        l1 += s[nt][2] + s[nt][3];
      }
#pragma unroll
      for (int kb = 0; kb < kKeys / 16; ++kb) {
        const uint32_t pa[4] = {pack_bf16(s[2 * kb][0], s[2 * kb][1]),
                                pack_bf16(s[2 * kb][2], s[2 * kb][3]),
                                pack_bf16(s[2 * kb + 1][0], s[2 * kb + 1][1]),
                                pack_bf16(s[2 * kb + 1][2], s[2 * kb + 1][3])};
#pragma unroll
        for (int dn = 0; dn < DN; dn += 2) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, vs + (kb * 16 + (lane & 15)) * S + (dn + (lane >> 4)) * 8);
          mma_bf16(o[dn], pa, b[0], b[1]);
          mma_bf16(o[dn + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next iteration's prefetch overwrites this stage
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  if (p.splits == 1) {
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    bf16* out0 = r0 < R ? a.out + (r0 / G) * a.out_stride + int64_t(kvh * G + r0 % G) * D : nullptr;
    bf16* out1 = r1 < R ? a.out + (r1 / G) * a.out_stride + int64_t(kvh * G + r1 % G) * D : nullptr;
#pragma unroll
    for (int dn = 0; dn < DN; ++dn) {
      if (out0)
        *reinterpret_cast<__nv_bfloat162*>(out0 + dn * 8 + 2 * t) =
            __floats2bfloat162_rn(o[dn][0] * inv0, o[dn][1] * inv0);
      if (out1)
        *reinterpret_cast<__nv_bfloat162*>(out1 + dn * 8 + 2 * t) =
            __floats2bfloat162_rn(o[dn][2] * inv1, o[dn][3] * inv1);
    }
  } else {
    const int64_t base = (int64_t(split) * a.num_kv_heads + kvh) * R;
#pragma unroll
    for (int dn = 0; dn < DN; ++dn) {
      if (r0 < R)
        *reinterpret_cast<float2*>(p.ws_o + (base + r0) * D + dn * 8 + 2 * t) =
            make_float2(o[dn][0], o[dn][1]);
      if (r1 < R)
        *reinterpret_cast<float2*>(p.ws_o + (base + r1) * D + dn * 8 + 2 * t) =
            make_float2(o[dn][2], o[dn][3]);
    }
    if (t == 0) {
      if (r0 < R) {
        p.ws_ml[(base + r0) * 2] = m0;
        p.ws_ml[(base + r0) * 2 + 1] = l0;
      }
      if (r1 < R) {
        p.ws_ml[(base + r1) * 2] = m1;
        p.ws_ml[(base + r1) * 2 + 1] = l1;
      }
    }
  }
}

// One block per (row, KV head), one thread per output dim: merges the splits' partials.
__global__ void combine_kernel(Params p) {
  const AttentionArgs& a = p.a;
  const int64_t r = blockIdx.x;
  const int kvh = blockIdx.y, D = a.head_dim;
  float M = -INFINITY;
  for (int z = 0; z < p.splits; ++z)
    M = fmaxf(M, p.ws_ml[((int64_t(z) * a.num_kv_heads + kvh) * p.R + r) * 2]);
  bf16* out = a.out + (r / p.G) * a.out_stride + int64_t(kvh * p.G + r % p.G) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f, L = 0.0f;
    if (M != -INFINITY) {
      for (int z = 0; z < p.splits; ++z) {
        const int64_t base = (int64_t(z) * a.num_kv_heads + kvh) * p.R + r;
        const float w = exp2f(p.ws_ml[base * 2] - M);  // 0 for empty splits (max -inf)
        acc += w * p.ws_o[base * D + d];
        L += w * p.ws_ml[base * 2 + 1];
      }
    }
    out[d] = __float2bfloat16_rn(L > 0.0f ? acc / L : 0.0f);
  }
}

struct Plan {
  int G = 1;
  int64_t R = 0, n_row_tiles = 0, keys_per_split = 0;
  int splits = 1;
};

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

Plan make_plan(const AttentionArgs& a, int num_sms, int force_splits) {
  if (a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0)
    throw_message("CUDA attention: num_heads must be a multiple of num_kv_heads");
  if (a.head_dim != 32 && a.head_dim != 64 && a.head_dim != 128)
    throw_message("CUDA attention: head_dim must be 32, 64 or 128");
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v) || !aligned16(a.out) ||
      a.q_stride % 8 || a.k_stride % 8 || a.v_stride % 8 || a.out_stride % 2)
    throw_message("CUDA attention: rows must be 16-byte aligned (strides multiple of 8)");
  Plan pl;
  pl.G = a.num_heads / a.num_kv_heads;
  pl.R = a.q_len * pl.G;
  pl.n_row_tiles = (pl.R + kRows - 1) / kRows;
  const int64_t kv = std::max<int64_t>(a.kv_len, 1);
  int splits = 1;
  if (force_splits > 0) {
    splits = force_splits;
  } else {
    const int64_t blocks = pl.n_row_tiles * a.num_kv_heads;
    // Split long key ranges until ~2 blocks per SM, each split keeping >= 128 keys (two
    // tiles: the decode step of one sequence then spreads over every SM).
    if (blocks < num_sms && a.kv_len >= 512) {
      const int64_t want = (2 * int64_t(num_sms) + blocks - 1) / blocks;
      splits = int(std::min<int64_t>({want, (a.kv_len + 127) / 128, 256}));
    }
  }
  pl.keys_per_split = ((kv + splits - 1) / splits + kKeys - 1) / kKeys * kKeys;
  pl.splits = int((kv + pl.keys_per_split - 1) / pl.keys_per_split);
  if (force_splits > 0) pl.splits = std::max(pl.splits, 1);
  return pl;
}

template <int D>
void launch(const Params& p, int64_t n_row_tiles, cudaStream_t stream) {
  constexpr int smem = (kRows + 4 * kKeys) * (D + 8) * int(sizeof(bf16));
  static bool configured = false;  // per D; the attribute is per function
  if (!configured) {
    KVO_CUDA(
        cudaFuncSetAttribute(flash_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = true;
  }
  const dim3 grid(static_cast<unsigned>(n_row_tiles), static_cast<unsigned>(p.a.num_kv_heads),
                  static_cast<unsigned>(p.splits));
  flash_kernel<D><<<grid, kThreads, smem, stream>>>(p);
  KVO_CUDA_LAUNCHED("flash_kernel");
}

}  // namespace

int64_t attention_workspace_bytes(const AttentionArgs& a, int num_sms, int force_splits) {
  const Plan pl = make_plan(a, num_sms, force_splits);
  if (pl.splits == 1) return 0;
  return int64_t(pl.splits) * a.num_kv_heads * pl.R * (a.head_dim + 2) * int64_t(sizeof(float));
}

void attention(const AttentionArgs& a, void* workspace, int num_sms, cudaStream_t stream,
               int force_splits) {
  if (a.q_len == 0) return;
  const Plan pl = make_plan(a, num_sms, force_splits);
  Params p{a, pl.G, pl.R, pl.splits, pl.keys_per_split, a.scale * kLog2e, nullptr, nullptr};
  if (pl.splits > 1) {
    if (!workspace) throw_message("CUDA attention: split-K needs a workspace");
    p.ws_o = static_cast<float*>(workspace);
    p.ws_ml = p.ws_o + int64_t(pl.splits) * a.num_kv_heads * pl.R * a.head_dim;
  }
  switch (a.head_dim) {
    case 32:
      launch<32>(p, pl.n_row_tiles, stream);
      break;
    case 64:
      launch<64>(p, pl.n_row_tiles, stream);
      break;
    default:
      launch<128>(p, pl.n_row_tiles, stream);
      break;
  }
  if (pl.splits > 1) {
    const dim3 grid(static_cast<unsigned>(pl.R), static_cast<unsigned>(a.num_kv_heads));
    combine_kernel<<<grid, a.head_dim, 0, stream>>>(p);
    KVO_CUDA_LAUNCHED("combine_kernel");
  }
}

}  // namespace kvo::cuda
