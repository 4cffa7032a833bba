// Kernels of the CUDA sparse KV policies (sparse_kernels.cu): landmarks and outliers at prefill,
// landmark scoring, selection (selection.h semantics), and the assembly of the attended keys and
// values. Every launcher is asynchronous on `stream`; pointers are device memory unless a
// comment says mapped pinned host memory. Shapes in comments: (dims), row-major.
//
// Names used below (kv_layout.h): H KV heads, Hq query heads, G = Hq / H, D head_dim, W = H * D,
// C tokens per chunk, M middle chunks, O outlier chunks per head, m = M - O candidate chunks,
// k selected chunks, S = O + k attended middle chunks per head, s_end the first middle token.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kvo::cuda {

using bf16 = __nv_bfloat16;

// out (2) = {*position + a, *position + b}: the rows a recorded decode step writes and attends
// at, from the position the step reads when it runs. *flip ^= 1 unless null (the fetch cache's
// phase, flipped by a decode step's first layer).
void shift_index(const int32_t* position, int32_t a, int32_t b, int32_t* out, int32_t* flip,
                 cudaStream_t stream);

// Per head and middle chunk j: means (H, M, D) = mean of the chunk's post-RoPE keys; min_cos
// (H, M) = the lowest cosine similarity of a key of the chunk to that mean (skipped when null).
// keys (tokens, W), chunk j covers tokens s_end + j*C .. + C.
void chunk_means(const bf16* keys, int64_t s_end, int64_t M, int C, int H, int D, float* means,
                 float* min_cos, cudaStream_t stream);

// Per row r of scores (rows, n): out (rows, k) = the indices of the k largest values (negate:
// smallest), ties to the lowest index, ascending (top_k_indices). k <= n.
void top_k_rows(const float* scores, int rows, int64_t n, int64_t k, bool negate, int32_t* out,
                cudaStream_t stream);

// Candidate chunks of each head, ascending: cand (H, M - O) = [0, M) minus outliers (H, O)
// (ascending per head).
void candidate_chunks(const int32_t* outliers, int H, int64_t M, int64_t O, int32_t* cand,
                      cudaStream_t stream);

// out (H, O, C, D) = the rows of the outlier chunks (H, O) of head h from x (tokens, W).
void gather_outlier_rows(const bf16* x, const int32_t* outliers, int64_t s_end, int H, int64_t O,
                         int C, int D, bf16* out, cudaStream_t stream);

// lm (H, m, D) bf16 = means (H, M, D) of the candidate chunks cand (H, m); cand == null: the
// candidates are every chunk (no outliers), here and in merge_slots.
void candidate_landmarks(const float* means, const int32_t* cand, int H, int64_t M, int64_t m,
                         int D, bf16* lm, cudaStream_t stream);

// Quest page bounds: bounds (m, 2W) = per page of C tokens from s_end [min over its keys | max].
void page_bounds(const bf16* keys, int64_t s_end, int64_t m, int C, int64_t W, bf16* bounds,
                 cudaStream_t stream);

// logits (n * Hq, m), row t * Hq + hq = scale * score(q[t, hq], landmark j of KV head hq / G):
// bounds == false: lm (H, m, D) and score = dot; bounds == true: lm (m, 2W) page bounds and
// score = sum_d max(q_d * min_d, q_d * max_d).
void score_landmarks(const bf16* q, int64_t q_stride, int64_t n, int Hq, int G, const bf16* lm,
                     bool bounds, int64_t m, int D, float scale, float* logits,
                     cudaStream_t stream);

// scores (rows, n) += group_scores (rows, groups) at column j / g: each group's score added onto
// its g members' (residual landmarks: a meta-vector's score onto each of its residuals').
void add_group_scores(const float* group_scores, int64_t rows, int64_t groups, int g, float* scores,
                      int64_t n, cudaStream_t stream);

// agg (H, m) = over the group of KV head h (max or mean over g) of the sum over the n query
// positions of softmax_j(logits (n * Hq, m) row t * Hq + h * G + g). stats: (n * Hq) scratch.
void aggregate_scores(const float* logits, int64_t n, int Hq, int G, int64_t m, bool mean,
                      float2* stats, float* agg, cudaStream_t stream);

// The attended middle chunks of each head in position order: outliers (H, O) merged with
// cand (H, m)[selected (H, k)]. slot_chunk (H, S) = chunk; slot_src (H, S) = i for outlier i,
// -1 - r for selected r.
void merge_slots(const int32_t* outliers, const int32_t* cand, const int32_t* selected, int H,
                 int64_t O, int64_t m, int64_t k, int32_t* slot_chunk, int32_t* slot_src,
                 cudaStream_t stream);

// Records to fetch for the selected slots. Per-(token, head) records: list (H, k, C) = tm * H + h
// (tm = token - s_end). Records spanning heads (flags != null): flags (middle tokens) = 1 for
// every selected token, the caller scans them into positions and calls compact_tokens.
void selected_records(const int32_t* slot_chunk, const int32_t* slot_src, int H, int64_t S,
                      int64_t k, int C, int32_t* list, int32_t* flags, cudaStream_t stream);
// pos = the exclusive prefix sum of flags (n); workspace: scan_workspace_bytes(n) bytes.
size_t scan_workspace_bytes(int64_t n);
void exclusive_scan(const int32_t* flags, int32_t* pos, int64_t n, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream);
// list[pos[t]] = t for flagged t < n, *count = number flagged (pos = exclusive prefix sum),
// also added to *total unless null.
void compact_tokens(const int32_t* flags, const int32_t* pos, int64_t n, int32_t* list,
                    int32_t* count, unsigned long long* total, cudaStream_t stream);

// The fetch cache keeps two sets, used by turns: with p = *phase (flipped once a step), set
// p ^ 1 holds what the latest step fetched and set p receives this step's. cached (2, max_n)
// record lists, cached_count (2) their lengths (spanning records only).
// hit[r] = where record list[r] sits in list p ^ 1, or -1, and list p [r] = list[r];
// *misses += the records not there (a running total). A list holds ascending runs: run > 0,
// record r is looked for in [r / run * run, + run) (per-head lists, every run full); run == 0,
// in [0, cached_count[p ^ 1]) (spanning records; cached_count[p] = *count). For r < *count
// (count == null: r < max_n).
void match_cached_records(const int32_t* list, const int32_t* count, int64_t max_n, int64_t run,
                          int32_t* cached, int32_t* cached_count, const int32_t* phase,
                          int32_t* hit, unsigned long long* misses, cudaStream_t stream);

// Records of rec_bytes split in two (kv_layout.h: HIGGS codes on the host, their scales on the
// device): host_parts (n, host_bytes) and tails (n, rec_bytes - host_bytes) of records (n,
// rec_bytes).
void split_records(const uint8_t* records, int64_t n, int64_t rec_bytes, int64_t host_bytes,
                   uint8_t* host_parts, uint8_t* tails, cudaStream_t stream);
// staging row i (rec_bytes) = record list[i] joined again: its host part from `store` (parts of
// host_bytes; mapped pinned host memory, 16-byte aligned, readable up to 15 bytes past its last
// part), its tail from `tails` (ignored when host_bytes == rec_bytes), for i < *count (count ==
// null: i < max_n): the zero-copy gather over PCIe, in 16-byte loads. With a fetch cache (hit
// != null; cache (2, max_n, rec_bytes), its sets by turns as in match_cached_records), a record
// whose hit[i] = j >= 0 is copied whole from row j of set *phase ^ 1 instead, and every row i
// also goes to row i of set *phase.
void gather_records(const uint8_t* store, int64_t host_bytes, const uint8_t* tails,
                    int64_t rec_bytes, const int32_t* list, const int32_t* count, int64_t max_n,
                    const int32_t* hit, uint8_t* cache, const int32_t* phase, uint8_t* staging,
                    cudaStream_t stream);

// Where the selected tokens' rows come from in assemble_middle.
struct SelectedSource {
  const void* rows = nullptr;  // bf16 or fp32 rows
  bool f32 = false;
  int64_t stride = 0;  // elements between rows
  // Row of selected slot r, token t (tm = t - s_end): by_token ? t : row_of_token ?
  // row_of_token[tm] : (h * k + r) * C + c; column offset h * D when per_head_columns, else 0.
  const int32_t* row_of_token = nullptr;
  bool by_token = false;
  bool per_head_columns = false;
  const float* inv_freq = nullptr;  // (D / 2): re-RoPE at the token's position when set
  bool adjacent_pairs = false;
};

// dst rows [s_end, s_end + S * C) of (rows, W): per head h and slot s, chunk slot_chunk[h, s]'s
// C rows from the outliers (H, O, C, D) or from `sel`.
void assemble_middle(const int32_t* slot_chunk, const int32_t* slot_src, int H, int64_t S,
                     int64_t k, int64_t O, int C, int D, int64_t s_end, const bf16* outliers,
                     const SelectedSource& sel, bf16* dst, cudaStream_t stream);

// Rows (H, k * C, r) of U for the selected tokens: u_sel[h, r * C + c] = u[tm] (shadowkv).
void gather_selected_u(const bf16* u, int64_t rank, const int32_t* slot_chunk,
                       const int32_t* slot_src, int H, int64_t S, int64_t k, int C, bf16* u_sel,
                       cudaStream_t stream);

// vt (r, W) bf16 = the eigenvectors of the r largest eigenvalues (syevd: ascending, one per
// column of the column-major (W, W) evecs), largest first.
void top_eigenvectors(const float* evecs, int64_t W, int64_t r, bf16* vt, cudaStream_t stream);

}  // namespace kvo::cuda
