// Causal GQA attention on bf16 (attention.cu): FlashAttention-2 style with tensor-core mma.
//
// Shape contract (row-major, strides in elements, every row 16-byte aligned):
//   q   [q_len,  num_heads    * head_dim]  stride q_stride
//   k,v [kv_len, num_kv_heads * head_dim]  stride k_stride / v_stride
//   out [q_len,  num_heads    * head_dim]  stride out_stride
//   head_dim in {32, 64, 128}; num_heads % num_kv_heads == 0; G = num_heads / num_kv_heads;
//   scale > 0 (the running max is taken before scaling).
// Query t has position q_start + t and sees keys j <= q_start + t (and j < kv_len).
//
// Work decomposition: a block owns one KV head and its "rows", a row being a (query t, head g of
// the GQA group) pair numbered r = t * G + g, so the G heads that share a KV head read each K/V
// tile once. Scores stay in registers (mma.m16n8k16, fp32 accumulate) with an online softmax in
// the exp2 domain, masked only on the tiles where a row's causal range ends; P is rounded to bf16
// for the P*V mma; no score matrix is stored.
//   - Prefill (flash_kernel, > 16 rows): 64 or 128 rows a block, 4 warps of 16 rows (chunks of
//     <= 64 rows: little padding) or of 32 (two m16 tiles a warp: every K/V fragment read from
//     shared memory feeds two mmas); keys stream through shared memory in tiles of 64 (cp.async,
//     double-buffered). Blocks are issued longest causal range first.
//   - Decode (decode_kernel, <= 16 rows: one query of a GQA group): each of the 4 warps attends
//     its own tiles of 16 keys, 3 of them in flight, and the block merges the warps' states.
// When the blocks would leave SMs idle and the context is long (decode), the key range is split
// across blocks (flash-decoding): each split writes an unnormalized fp32 partial output plus its
// (max, sum) to a workspace from the caller (attention_workspace_bytes), and a combine kernel
// merges them, or, in decode with split_counters, the last split of a KV head to finish does.
// Batched decode (`seqs`): one launch attends seqs->count sequences, sequence s reading its keys
// and values from seqs->keys[s] / seqs->values[s] (a.k and a.v unused), its q_len rows of q and
// out after sequence s - 1's, and its q_start from a.q_start_at[s]; a.kv_len bounds them all.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/seq_tables.h"

namespace kvo::cuda {

struct AttentionArgs {
  const __nv_bfloat16* q = nullptr;
  int64_t q_stride = 0;
  const __nv_bfloat16* k = nullptr;
  int64_t k_stride = 0;
  const __nv_bfloat16* v = nullptr;
  int64_t v_stride = 0;
  __nv_bfloat16* out = nullptr;
  int64_t out_stride = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int64_t q_len = 0, q_start = 0, kv_len = 0;
  float scale = 0.0f;
  // When set, q_start is read from this device int32 when the kernel runs and the keys
  // attended are [0, q_start + q_len), kv_len being only their bound (the plan and workspace
  // are sized for it): a recorded decode step stays valid at every position.
  const int32_t* q_start_at = nullptr;
  // Optional, for decode (<= 16 rows a KV head: q_len * num_heads / num_kv_heads): zeroed device
  // counters, at least (sequences x num_kv_heads), with which the last key split to finish
  // merges them all instead of a second launch. Each launch leaves them zeroed; launches that
  // share them must run in stream order.
  uint32_t* split_counters = nullptr;
  int64_t split_counter_slots = 0;
  // Optional, batched decode only (attention_fuses_rope; `seqs`, q_start_at): the step's RoPE and
  // K/V append in the same launch. q is then the query before RoPE (rotated as it is loaded, left
  // as it was in memory), and sequence s's new key (before RoPE) and value, row s of new_k /
  // new_v, are written (the key rotated) into its tables at its position before it is attended.
  const float* rope_inv_freq = nullptr;  // head_dim / 2 frequencies (model/rope.h)
  bool rope_adjacent = false;
  const __nv_bfloat16* new_k = nullptr;
  int64_t new_k_stride = 0;
  const __nv_bfloat16* new_v = nullptr;
  int64_t new_v_stride = 0;
};

// Whether `attention` can take a batched decode step's RoPE and K/V append (the decode kernel:
// one query of at most 16 heads a KV head).
bool attention_fuses_rope(const AttentionArgs& a);

// Bytes of device workspace `attention` needs for these shapes on a GPU with `num_sms` SMs
// (0 when the key range is not split). Throws kvo::Error on unsupported shapes.
int64_t attention_workspace_bytes(const AttentionArgs& a, int num_sms, int force_splits = 0,
                                  int num_seqs = 1);

// Launches the attention; `workspace` has attention_workspace_bytes(a, num_sms, force_splits,
// seqs ? seqs->count : 1) bytes.
// force_splits > 0 overrides the split heuristic (tests use it to cover both paths).
void attention(const AttentionArgs& a, void* workspace, int num_sms, cudaStream_t stream,
               int force_splits = 0, const SeqTables* seqs = nullptr);

}  // namespace kvo::cuda
