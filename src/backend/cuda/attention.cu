// Causal GQA flash attention in bf16 with mma.sync tensor-core tiles; contract in attention.h.
// The kernels live in attention_prefill.cuh and attention_decode.cuh (what they share in
// attention_tiles.cuh); this file plans a call (rows, splits, workspace) and launches them.
#include <algorithm>
#include <cstdint>
#include <string>

#include "backend/cuda/attention.h"
#include "backend/cuda/attention_decode.cuh"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/check.h"

namespace kvo::cuda {

[[noreturn]] void throw_message(const char* message);  // cuda_backend.cpp

namespace {

using namespace attn;

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
  // Rounded to the kernel's key tile only: at 4,097 keys in 16 decode splits, 64-key rounding left
  // 3 splits empty and the others 320 keys long instead of 272 (bench/RESULTS.md, eighth pass).
  pl.keys_per_split = split_keys(kv, splits, pl.decode ? kDecodeKeys : kKeys);
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
