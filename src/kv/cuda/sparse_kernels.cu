// Kernels of the CUDA sparse KV policies; contracts in sparse_kernels.h. They mirror the CPU
// reference (sparse.cpp, selection.h) operation by operation so that selections agree except at
// near-ties: chunk statistics in double, softmax in fp32 with the max subtracted, top-k on the
// exact float order with ties to the lowest index.
#include <algorithm>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_scan.cuh>

#include "backend/cuda/check.h"
#include "kv/cuda/sparse_kernels.h"

namespace kvo::cuda {
namespace {

constexpr int kBlock = 256;

int blocks_for(int64_t n, int per_block = kBlock) {
  return int((n + per_block - 1) / per_block);
}

template <typename T>
__device__ T block_sum(T x, T* shared) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < warps; ++w) total += shared[w];
  return total;
}

__device__ float block_max(float x, float* shared) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  float total = -INFINITY;
  for (int w = 0; w < warps; ++w) total = fmaxf(total, shared[w]);
  return total;
}

__global__ void shift_index_kernel(const int32_t* position, int32_t a, int32_t b, int32_t* out,
                                   int32_t* flip) {
  out[0] = *position + a;
  out[1] = *position + b;
  if (flip) *flip ^= 1;
}

// One block of D threads (rounded up to a warp multiple) per (head, chunk).
__global__ void chunk_means_kernel(const bf16* keys, int64_t s_end, int64_t M, int C, int H, int D,
                                   float* means, float* min_cos) {
  __shared__ double red[32];
  const int64_t j = blockIdx.x;
  const int h = blockIdx.y, d = threadIdx.x;
  const int64_t W = int64_t(H) * D;
  const bf16* base = keys + (s_end + j * C) * W + int64_t(h) * D;
  double s = 0;
  if (d < D)
    for (int c = 0; c < C; ++c) s += double(__bfloat162float(base[c * W + d]));
  const float mean = d < D ? float(s / double(C)) : 0.0f;
  if (d < D) means[(int64_t(h) * M + j) * D + d] = mean;
  if (!min_cos) return;
  const double mn = block_sum(double(mean) * mean, red);
  double worst = INFINITY;
  for (int c = 0; c < C; ++c) {
    const double kv = d < D ? double(__bfloat162float(base[c * W + d])) : 0.0;
    const double dot = block_sum(kv * mean, red), kn = block_sum(kv * kv, red);
    const double denom = sqrt(mn * kn);
    worst = fmin(worst, denom > 0 ? dot / denom : 1.0);
  }
  if (d == 0) min_cos[int64_t(h) * M + j] = float(worst);
}

// Order-preserving map of a float to uint32 (larger float, larger key); -0 == +0 like the CPU.
__device__ uint32_t order_key(float x, bool negate) {
  if (negate) x = -x;
  const uint32_t u = __float_as_uint(x == 0.0f ? 0.0f : x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

constexpr int kTopKBlock = 1024, kTopKWarps = kTopKBlock / 32;
constexpr int kTopKBatch = 8;  // loads in flight per thread
constexpr uint32_t kNoBin = ~0u;

// hist[digit] += the keys of row s whose bits above `shift` equal prefix (under mask), by their
// `bits`-wide digit at `shift`. Scores share their leading bits: one shared atomic per distinct
// bin and warp, not per lane; every lane runs the same trip count for the warp-wide match.
__device__ void top_k_histogram(const float* s, int64_t n, bool negate, uint32_t prefix,
                                uint32_t mask, int shift, int bits, uint32_t* hist) {
  const int lane = threadIdx.x % 32;
  for (int64_t base = 0; base < n; base += int64_t(kTopKBlock) * kTopKBatch) {
    float v[kTopKBatch];
#pragma unroll
    for (int j = 0; j < kTopKBatch; ++j) {
      const int64_t i = base + j * kTopKBlock + threadIdx.x;
      v[j] = i < n ? s[i] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kTopKBatch; ++j) {
      uint32_t bin = kNoBin;
      if (base + j * kTopKBlock + threadIdx.x < n) {
        const uint32_t u = order_key(v[j], negate);
        if ((u & mask) == prefix) bin = (u >> shift) & ((1u << bits) - 1);
      }
      const uint32_t peers = __match_any_sync(0xffffffffu, bin);
      if (bin != kNoBin && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
    }
  }
}

// One block per row: radix select of the k-th largest key (digits of 11, 11 and 10 bits), then
// an ordered compaction of the keys above it plus its lowest-index ties: each warp counts its
// own contiguous segment, and after a scan of the counts writes its picks in index order.
__global__ void __launch_bounds__(kTopKBlock)
    top_k_kernel(const float* scores, int64_t n, int64_t k, bool negate, int32_t* out) {
  const float* s = scores + int64_t(blockIdx.x) * n;
  int32_t* o = out + int64_t(blockIdx.x) * k;
  __shared__ uint32_t hist[2048];
  __shared__ uint32_t sh_prefix;
  __shared__ int64_t sh_remaining;
  __shared__ int64_t warp_gt[kTopKWarps], warp_eq[kTopKWarps];
  using Scan = cub::BlockScan<int64_t, kTopKBlock>;
  __shared__ typename Scan::TempStorage scan_storage;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  uint32_t prefix = 0, mask = 0;
  int64_t remaining = k;
  constexpr int kShift[3] = {21, 10, 0}, kBits[3] = {11, 11, 10};
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = kShift[pass], bits = kBits[pass];
    for (int i = tid; i < 2048; i += kTopKBlock) hist[i] = 0;
    __syncthreads();
    top_k_histogram(s, n, negate, prefix, mask, shift, bits, hist);
    __syncthreads();
    // The digit d of the k-th largest: count(> d) < remaining <= count(>= d). Thread t owns the
    // bins 2047 - 2t and 2046 - 2t (descending), so an exclusive scan gives the count above.
    const int b0 = 2047 - 2 * tid, b1 = b0 - 1;
    const int64_t h0 = hist[b0], h1 = hist[b1];
    int64_t above = 0;
    Scan(scan_storage).ExclusiveSum(h0 + h1, above);
    if (above < remaining && above + h0 >= remaining) {
      sh_prefix = prefix | (uint32_t(b0) << shift);
      sh_remaining = remaining - above;
    } else if (above + h0 < remaining && above + h0 + h1 >= remaining) {
      sh_prefix = prefix | (uint32_t(b1) << shift);
      sh_remaining = remaining - above - h0;
    }
    __syncthreads();
    prefix = sh_prefix;
    remaining = sh_remaining;
    mask |= ((1u << bits) - 1) << shift;
  }
  // Keys > prefix are all selected; of the keys == prefix, the first `remaining` by index. The
  // segments are whole multiples of 32 * kTopKBatch keys, read kTopKBatch loads at a time.
  constexpr int64_t kStep = 32 * kTopKBatch;
  const int64_t seg = ((n + kTopKWarps - 1) / kTopKWarps + kStep - 1) / kStep * kStep;
  const int64_t lo = warp * seg < n ? warp * seg : n, hi = lo + seg < n ? lo + seg : n;
  // f(i, gt mask, eq mask) for each run of 32 keys from i, in index order.
  auto for_each_run = [&](auto&& f) {
    for (int64_t base = lo; base < hi; base += kStep) {
      uint32_t u[kTopKBatch];
#pragma unroll
      for (int j = 0; j < kTopKBatch; ++j) {
        const int64_t i = base + 32 * j + lane;
        u[j] = i < hi ? order_key(s[i], negate) : 0u;
      }
#pragma unroll
      for (int j = 0; j < kTopKBatch; ++j) {
        const int64_t i = base + 32 * j + lane;
        f(i, __ballot_sync(0xffffffffu, i < hi && u[j] > prefix),
          __ballot_sync(0xffffffffu, i < hi && u[j] == prefix));
      }
    }
  };
  int64_t gt_before = 0, eq_before = 0;
  for_each_run([&](int64_t, uint32_t gts, uint32_t eqs) {
    gt_before += __popc(gts);
    eq_before += __popc(eqs);
  });
  if (lane == 0) {
    warp_gt[warp] = gt_before;
    warp_eq[warp] = eq_before;
  }
  __syncthreads();
  gt_before = eq_before = 0;
  for (int w = 0; w < warp; ++w) {
    gt_before += warp_gt[w];
    eq_before += warp_eq[w];
  }
  const uint32_t below_lane = (1u << lane) - 1, lane_bit = 1u << lane;
  for_each_run([&](int64_t i, uint32_t gts, uint32_t eqs) {
    const int64_t g = gt_before + __popc(gts & below_lane),
                  e = eq_before + __popc(eqs & below_lane);
    if ((gts & lane_bit) || ((eqs & lane_bit) && e < remaining))
      o[g + (e < remaining ? e : remaining)] = int32_t(i);
    gt_before += __popc(gts);
    eq_before += __popc(eqs);
  });
}

// Number of entries of the ascending a[0, n) below x.
__device__ int64_t count_below(const int32_t* a, int64_t n, int32_t x) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (a[mid] < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

__global__ void candidate_chunks_kernel(const int32_t* outliers, int H, int64_t M, int64_t O,
                                        int32_t* cand) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(H) * M) return;
  const int h = int(i / M);
  const int32_t j = int32_t(i % M);
  const int32_t* out = outliers + int64_t(h) * O;
  const int64_t below = count_below(out, O, j);
  if (below < O && out[below] == j) return;
  cand[int64_t(h) * (M - O) + (j - below)] = j;
}

__global__ void gather_outlier_rows_kernel(const bf16* x, const int32_t* outliers, int64_t s_end,
                                           int H, int64_t O, int C, int D, bf16* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = int64_t(H) * O * C * D;
  if (i >= total) return;
  const int d = int(i % D);
  const int c = int((i / D) % C);
  const int64_t slot = i / (int64_t(D) * C);  // h * O + o
  const int h = int(slot / O);
  const int64_t t = s_end + int64_t(outliers[slot]) * C + c;
  out[i] = x[t * H * D + int64_t(h) * D + d];
}

__global__ void candidate_landmarks_kernel(const float* means, const int32_t* cand, int H,
                                           int64_t M, int64_t m, int D, bf16* lm) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(H) * m * D) return;
  const int d = int(i % D);
  const int64_t hc = i / D;  // h * m + candidate
  const int h = int(hc / m);
  const int64_t j = cand ? cand[hc] : hc % m;
  lm[i] = __float2bfloat16(means[(int64_t(h) * M + j) * D + d]);
}

__global__ void page_bounds_kernel(const bf16* keys, int64_t s_end, int64_t m, int C, int64_t W,
                                   bf16* bounds) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * W) return;
  const int64_t j = i / W, col = i % W;
  float mn = INFINITY, mx = -INFINITY;
  for (int c = 0; c < C; ++c) {
    const float v = __bfloat162float(keys[(s_end + j * C + c) * W + col]);
    mn = fminf(mn, v);
    mx = fmaxf(mx, v);
  }
  bounds[j * 2 * W + col] = __float2bfloat16(mn);
  bounds[j * 2 * W + W + col] = __float2bfloat16(mx);
}

// One warp per (KV head, landmark): the landmark stays in registers while the warp scores every
// query row of the group.
template <bool kBounds>
__global__ void score_landmarks_kernel(const bf16* q, int64_t q_stride, int64_t n, int Hq, int G,
                                       const bf16* lm, int64_t m, int D, float scale,
                                       float* logits) {
  constexpr int kMaxPerLane = 8;  // head_dim <= 256
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  const int H = Hq / G;
  if (warp >= int64_t(H) * m) return;
  const int h = int(warp / m);
  const int64_t j = warp % m;
  const int64_t W = int64_t(H) * D;
  float lo[kMaxPerLane], hi[kMaxPerLane];
  for (int e = 0; e < kMaxPerLane; ++e) {
    const int d = lane + 32 * e;
    lo[e] = hi[e] = 0.0f;
    if (d >= D) continue;
    if (kBounds) {
      lo[e] = __bfloat162float(lm[j * 2 * W + int64_t(h) * D + d]);
      hi[e] = __bfloat162float(lm[j * 2 * W + W + int64_t(h) * D + d]);
    } else {
      lo[e] = __bfloat162float(lm[(int64_t(h) * m + j) * D + d]);
    }
  }
  for (int64_t t = 0; t < n; ++t)
    for (int g = 0; g < G; ++g) {
      const int hq = h * G + g;
      const bf16* qr = q + t * q_stride + int64_t(hq) * D;
      float s = 0.0f;
      for (int e = 0; e < kMaxPerLane; ++e) {
        const int d = lane + 32 * e;
        if (d >= D) break;
        const float x = __bfloat162float(qr[d]);
        s += kBounds ? fmaxf(x * lo[e], x * hi[e]) : x * lo[e];
      }
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (lane == 0) logits[(t * Hq + hq) * m + j] = s * scale;
    }
}

// One thread per score: scores[r][j] += group_scores[r][j / g].
__global__ void add_group_scores_kernel(const float* group_scores, int64_t rows, int64_t groups,
                                        int g, float* scores, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * n) return;
  const int64_t r = i / n, j = i % n;
  scores[i] += group_scores[r * groups + j / g];
}

// One block per logits row: (max, 1 / sum exp(x - max)).
__global__ void softmax_stats_kernel(const float* logits, int64_t m, float2* stats) {
  __shared__ float red[32];
  const float* row = logits + int64_t(blockIdx.x) * m;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) mx = fmaxf(mx, row[j]);
  mx = block_max(mx, red);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) sum += expf(row[j] - mx);
  sum = block_sum(sum, red);
  if (threadIdx.x == 0) stats[blockIdx.x] = make_float2(mx, sum > 0 ? 1.0f / sum : 0.0f);
}

__global__ void aggregate_kernel(const float* logits, const float2* stats, int64_t n, int Hq, int G,
                                 int64_t m, bool mean, float* agg) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int H = Hq / G;
  if (i >= int64_t(H) * m) return;
  const int h = int(i / m);
  const int64_t j = i % m;
  float out = mean ? 0.0f : -INFINITY;
  for (int g = 0; g < G; ++g) {
    float per_head = 0.0f;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t r = t * Hq + h * G + g;
      const float2 st = stats[r];
      per_head += expf(logits[r * m + j] - st.x) * st.y;
    }
    out = mean ? out + per_head / float(G) : fmaxf(out, per_head);
  }
  agg[i] = out;
}

__global__ void merge_slots_kernel(const int32_t* outliers, const int32_t* cand,
                                   const int32_t* selected, int H, int64_t O, int64_t m, int64_t k,
                                   int32_t* slot_chunk, int32_t* slot_src) {
  const int64_t S = O + k;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(H) * S) return;
  const int h = int(i / S);
  const int64_t e = i % S;
  const int32_t* out = outliers + int64_t(h) * O;
  const int32_t* c = cand ? cand + int64_t(h) * m : nullptr;
  const int32_t* sel = selected + int64_t(h) * k;
  auto chunk_of = [&](int64_t x) { return c ? c[sel[x]] : sel[x]; };
  int32_t chunk, src;
  int64_t rank;
  if (e < O) {
    chunk = out[e];
    src = int32_t(e);
    int64_t lo = 0, hi = k;  // selected chunks below `chunk` (ascending: cand and sel are)
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (chunk_of(mid) < chunk)
        lo = mid + 1;
      else
        hi = mid;
    }
    rank = e + lo;
  } else {
    const int64_t r = e - O;
    chunk = chunk_of(r);
    src = -1 - int32_t(r);
    rank = r + count_below(out, O, chunk);
  }
  slot_chunk[int64_t(h) * S + rank] = chunk;
  slot_src[int64_t(h) * S + rank] = src;
}

__global__ void selected_records_kernel(const int32_t* slot_chunk, const int32_t* slot_src, int H,
                                        int64_t S, int64_t k, int C, int32_t* list,
                                        int32_t* flags) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(H) * S * C) return;
  const int c = int(i % C);
  const int64_t hs = i / C;
  const int32_t src = slot_src[hs];
  if (src >= 0) return;
  const int h = int(hs / S);
  const int64_t tm = int64_t(slot_chunk[hs]) * C + c;
  if (flags)
    flags[tm] = 1;
  else
    list[(int64_t(h) * k + (-1 - src)) * C + c] = int32_t(tm * H + h);
}

__global__ void compact_tokens_kernel(const int32_t* flags, const int32_t* pos, int64_t n,
                                      int32_t* list, int32_t* count, unsigned long long* total) {
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  if (flags[t]) list[pos[t]] = int32_t(t);
  if (t == n - 1) {
    *count = pos[t] + flags[t];
    if (total) *total += static_cast<unsigned long long>(pos[t] + flags[t]);
  }
}

__global__ void match_cached_records_kernel(const int32_t* list, const int32_t* count,
                                            int64_t max_n, int64_t run, int32_t* lists,
                                            int32_t* counts, const int32_t* phase, int32_t* hit,
                                            unsigned long long* misses) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int p = *phase;
  const int32_t* cached = lists + (p ^ 1) * max_n;
  const int64_t n = count ? *count : max_n;
  if (r == 0 && counts) counts[p] = int32_t(n);
  bool miss = false;
  if (r < n) {
    const int32_t id = list[r];
    lists[p * max_n + r] = id;
    int64_t lo = run > 0 ? r / run * run : 0;
    const int64_t end = run > 0 ? lo + run : counts[p ^ 1];
    int64_t hi = end;
    while (lo < hi) {  // lower bound of id
      const int64_t mid = (lo + hi) / 2;
      if (cached[mid] < id)
        lo = mid + 1;
      else
        hi = mid;
    }
    const bool found = lo < end && cached[lo] == id;
    hit[r] = found ? int32_t(lo) : -1;
    miss = !found;
  }
  // One atomic a warp: a step's misses of a layer all land on one counter.
  const unsigned warp_misses = __ballot_sync(0xffffffffu, miss);
  if ((threadIdx.x & 31) == 0 && warp_misses)
    atomicAdd(misses, static_cast<unsigned long long>(__popc(warp_misses)));
}

// Per record, one thread per 16-byte aligned chunk of its host part (which need not be aligned:
// a per-head bf16 record is 256 bytes, a spanning fp8 one may be anything) plus one for its
// device tail: every PCIe load is a full 16 bytes, so a warp has 512 bytes of reads in flight
// per instruction, and no chunk reaches outside the 32-byte sectors the record occupies anyway.
// Threads store in Unit pieces (4 bytes when the sizes allow, else 1). Loads may run up to 15
// bytes past the store's last record, inside its page-granular pinned allocation.
template <typename Unit>
__global__ void gather_records_kernel(const uint8_t* store, int64_t host_bytes,
                                      const uint8_t* tails, int64_t rec_bytes, int host_chunks,
                                      const int32_t* list, const int32_t* count, int64_t max_n,
                                      const int32_t* hit, uint8_t* cache, const int32_t* phase,
                                      uint8_t* staging) {
  const int per_rec = host_chunks + (rec_bytes > host_bytes);
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t r = i / per_rec;
  if (r >= (count ? *count : max_n)) return;
  const int64_t rec = list[r];
  const int c = int(i % per_rec);
  // Each piece goes to the staging row and, with a fetch cache, to this step's set.
  uint8_t* dst = staging + r * rec_bytes;
  uint8_t* kept = nullptr;
  const int p = hit ? *phase : 0;
  if (hit) kept = cache + (p * max_n + r) * rec_bytes;
  auto put = [&](int64_t at, Unit v) {
    *reinterpret_cast<Unit*>(dst + at) = v;
    if (kept) *reinterpret_cast<Unit*>(kept + at) = v;
  };
  if (hit && hit[r] >= 0) {  // fetched by the latest step: the whole record from its set
    const uint8_t* src = cache + ((p ^ 1) * max_n + hit[r]) * rec_bytes;
    for (int64_t at = int64_t(c) * int64_t(sizeof(Unit)); at < rec_bytes;
         at += int64_t(per_rec) * int64_t(sizeof(Unit)))
      put(at, *reinterpret_cast<const Unit*>(src + at));
    return;
  }
  if (c == host_chunks) {  // the tail, from device memory
    const int64_t tail = rec_bytes - host_bytes;
    for (int64_t at = 0; at < tail; at += int64_t(sizeof(Unit)))
      put(host_bytes + at, *reinterpret_cast<const Unit*>(tails + rec * tail + at));
    return;
  }
  const int64_t begin = rec * host_bytes, end = begin + host_bytes;
  const int64_t at = (begin & ~int64_t{15}) + int64_t(c) * 16;
  if (at >= end) return;
  const uint4 chunk = *reinterpret_cast<const uint4*>(store + at);
  const Unit* piece = reinterpret_cast<const Unit*>(&chunk);
#pragma unroll
  for (int e = 0; e < int(16 / sizeof(Unit)); ++e) {
    const int64_t b = at + e * int64_t(sizeof(Unit));
    if (b >= begin && b < end) put(b - begin, piece[e]);
  }
}

__global__ void split_records_kernel(const uint8_t* records, int64_t n, int64_t rec_bytes,
                                     int64_t host_bytes, uint8_t* host_parts, uint8_t* tails) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * rec_bytes) return;
  const int64_t r = i / rec_bytes, b = i % rec_bytes;
  const int64_t tail = rec_bytes - host_bytes;
  if (b < host_bytes)
    host_parts[r * host_bytes + b] = records[i];
  else
    tails[r * tail + b - host_bytes] = records[i];
}

// One block per (head, middle row); threads over the D / 2 rotation pairs.
__global__ void assemble_middle_kernel(const int32_t* slot_chunk, const int32_t* slot_src,
                                       int64_t S, int64_t k, int64_t O, int C, int D, int64_t s_end,
                                       const bf16* outliers, SelectedSource sel, bf16* dst) {
  const int h = blockIdx.y;
  const int64_t row = blockIdx.x;  // s * C + c
  const int64_t s = row / C;
  const int c = int(row % C);
  const int H = gridDim.y;
  const int64_t W = int64_t(H) * D;
  const int64_t hs = int64_t(h) * S + s;
  const int32_t src = slot_src[hs];
  const int64_t t = s_end + int64_t(slot_chunk[hs]) * C + c;
  bf16* out = dst + (s_end + row) * W + int64_t(h) * D;
  const int half = D / 2;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const int a = sel.adjacent_pairs ? 2 * i : i;
    const int b = sel.adjacent_pairs ? 2 * i + 1 : i + half;
    if (src >= 0) {
      const bf16* o = outliers + ((int64_t(h) * O + src) * C + c) * D;
      out[a] = o[a];
      out[b] = o[b];
      continue;
    }
    const int64_t r = -1 - src;
    const int64_t tm = t - s_end;
    const int64_t in_row = sel.by_token       ? t
                           : sel.row_of_token ? int64_t(sel.row_of_token[tm])
                                              : (int64_t(h) * k + r) * C + c;
    const int64_t at = in_row * sel.stride + (sel.per_head_columns ? int64_t(h) * D : 0);
    float x0, x1;
    if (sel.f32) {
      const float* p = static_cast<const float*>(sel.rows) + at;
      x0 = p[a];
      x1 = p[b];
    } else {
      const bf16* p = static_cast<const bf16*>(sel.rows) + at;
      x0 = __bfloat162float(p[a]);
      x1 = __bfloat162float(p[b]);
    }
    if (sel.inv_freq) {
      float sn, cs;
      sincosf(float(t) * sel.inv_freq[i], &sn, &cs);
      const float y0 = x0 * cs - x1 * sn, y1 = x1 * cs + x0 * sn;
      x0 = y0;
      x1 = y1;
    }
    out[a] = __float2bfloat16(x0);
    out[b] = __float2bfloat16(x1);
  }
}

__global__ void gather_selected_u_kernel(const bf16* u, int64_t rank, const int32_t* slot_chunk,
                                         const int32_t* slot_src, int64_t S, int64_t k, int C,
                                         bf16* u_sel) {
  const int h = blockIdx.y;
  const int64_t row = blockIdx.x;  // s * C + c
  const int64_t hs = int64_t(h) * S + row / C;
  const int32_t src = slot_src[hs];
  if (src >= 0) return;
  const int c = int(row % C);
  const int64_t tm = int64_t(slot_chunk[hs]) * C + c;
  const int64_t r = -1 - src;
  bf16* out = u_sel + ((int64_t(h) * k + r) * C + c) * rank;
  for (int64_t i = threadIdx.x; i < rank; i += blockDim.x) out[i] = u[tm * rank + i];
}

__global__ void top_eigenvectors_kernel(const float* evecs, int64_t W, int64_t r, bf16* vt) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= r * W) return;
  const int64_t row = i / W, col = i % W;
  vt[i] = __float2bfloat16(evecs[(W - 1 - row) * W + col]);
}

}  // namespace

void shift_index(const int32_t* position, int32_t a, int32_t b, int32_t* out, int32_t* flip,
                 cudaStream_t stream) {
  shift_index_kernel<<<1, 1, 0, stream>>>(position, a, b, out, flip);
  KVO_CUDA_LAUNCHED("shift_index");
}

void chunk_means(const bf16* keys, int64_t s_end, int64_t M, int C, int H, int D, float* means,
                 float* min_cos, cudaStream_t stream) {
  if (M == 0) return;
  const int threads = (D + 31) / 32 * 32;
  chunk_means_kernel<<<dim3(unsigned(M), unsigned(H)), threads, 0, stream>>>(keys, s_end, M, C, H,
                                                                             D, means, min_cos);
  KVO_CUDA_LAUNCHED("chunk_means");
}

void top_k_rows(const float* scores, int rows, int64_t n, int64_t k, bool negate, int32_t* out,
                cudaStream_t stream) {
  if (rows == 0 || k == 0) return;
  top_k_kernel<<<rows, kTopKBlock, 0, stream>>>(scores, n, k, negate, out);
  KVO_CUDA_LAUNCHED("top_k");
}

void candidate_chunks(const int32_t* outliers, int H, int64_t M, int64_t O, int32_t* cand,
                      cudaStream_t stream) {
  if (M == 0) return;
  candidate_chunks_kernel<<<blocks_for(H * M), kBlock, 0, stream>>>(outliers, H, M, O, cand);
  KVO_CUDA_LAUNCHED("candidate_chunks");
}

void gather_outlier_rows(const bf16* x, const int32_t* outliers, int64_t s_end, int H, int64_t O,
                         int C, int D, bf16* out, cudaStream_t stream) {
  const int64_t total = int64_t(H) * O * C * D;
  if (total == 0) return;
  gather_outlier_rows_kernel<<<blocks_for(total), kBlock, 0, stream>>>(x, outliers, s_end, H, O, C,
                                                                       D, out);
  KVO_CUDA_LAUNCHED("gather_outlier_rows");
}

void candidate_landmarks(const float* means, const int32_t* cand, int H, int64_t M, int64_t m,
                         int D, bf16* lm, cudaStream_t stream) {
  const int64_t total = int64_t(H) * m * D;
  if (total == 0) return;
  candidate_landmarks_kernel<<<blocks_for(total), kBlock, 0, stream>>>(means, cand, H, M, m, D, lm);
  KVO_CUDA_LAUNCHED("candidate_landmarks");
}

void page_bounds(const bf16* keys, int64_t s_end, int64_t m, int C, int64_t W, bf16* bounds,
                 cudaStream_t stream) {
  if (m == 0) return;
  page_bounds_kernel<<<blocks_for(m * W), kBlock, 0, stream>>>(keys, s_end, m, C, W, bounds);
  KVO_CUDA_LAUNCHED("page_bounds");
}

void score_landmarks(const bf16* q, int64_t q_stride, int64_t n, int Hq, int G, const bf16* lm,
                     bool bounds, int64_t m, int D, float scale, float* logits,
                     cudaStream_t stream) {
  if (D > 256) throw_cuda("score_landmarks", "head_dim above 256");
  const int64_t threads = int64_t(Hq / G) * m * 32;
  if (threads == 0) return;
  if (bounds)
    score_landmarks_kernel<true><<<blocks_for(threads), kBlock, 0, stream>>>(
        q, q_stride, n, Hq, G, lm, m, D, scale, logits);
  else
    score_landmarks_kernel<false><<<blocks_for(threads), kBlock, 0, stream>>>(
        q, q_stride, n, Hq, G, lm, m, D, scale, logits);
  KVO_CUDA_LAUNCHED("score_landmarks");
}

void add_group_scores(const float* group_scores, int64_t rows, int64_t groups, int g, float* scores,
                      int64_t n, cudaStream_t stream) {
  if (rows * n == 0) return;
  add_group_scores_kernel<<<blocks_for(rows * n), kBlock, 0, stream>>>(group_scores, rows, groups,
                                                                       g, scores, n);
  KVO_CUDA_LAUNCHED("add_group_scores");
}

void aggregate_scores(const float* logits, int64_t n, int Hq, int G, int64_t m, bool mean,
                      float2* stats, float* agg, cudaStream_t stream) {
  if (m == 0) return;
  softmax_stats_kernel<<<unsigned(n * Hq), 1024, 0, stream>>>(logits, m, stats);
  KVO_CUDA_LAUNCHED("softmax_stats");
  aggregate_kernel<<<blocks_for(int64_t(Hq / G) * m), kBlock, 0, stream>>>(logits, stats, n, Hq, G,
                                                                           m, mean, agg);
  KVO_CUDA_LAUNCHED("aggregate_scores");
}

void merge_slots(const int32_t* outliers, const int32_t* cand, const int32_t* selected, int H,
                 int64_t O, int64_t m, int64_t k, int32_t* slot_chunk, int32_t* slot_src,
                 cudaStream_t stream) {
  const int64_t total = int64_t(H) * (O + k);
  if (total == 0) return;
  merge_slots_kernel<<<blocks_for(total), kBlock, 0, stream>>>(outliers, cand, selected, H, O, m, k,
                                                               slot_chunk, slot_src);
  KVO_CUDA_LAUNCHED("merge_slots");
}

void selected_records(const int32_t* slot_chunk, const int32_t* slot_src, int H, int64_t S,
                      int64_t k, int C, int32_t* list, int32_t* flags, cudaStream_t stream) {
  const int64_t total = int64_t(H) * S * C;
  if (total == 0) return;
  selected_records_kernel<<<blocks_for(total), kBlock, 0, stream>>>(slot_chunk, slot_src, H, S, k,
                                                                    C, list, flags);
  KVO_CUDA_LAUNCHED("selected_records");
}

size_t scan_workspace_bytes(int64_t n) {
  size_t bytes = 0;
  KVO_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, bytes, static_cast<const int32_t*>(nullptr),
                                         static_cast<int32_t*>(nullptr), n));
  return bytes;
}

void exclusive_scan(const int32_t* flags, int32_t* pos, int64_t n, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream) {
  if (n == 0) return;
  KVO_CUDA(cub::DeviceScan::ExclusiveSum(workspace, workspace_bytes, flags, pos, n, stream));
}

void compact_tokens(const int32_t* flags, const int32_t* pos, int64_t n, int32_t* list,
                    int32_t* count, unsigned long long* total, cudaStream_t stream) {
  if (n == 0) return;
  compact_tokens_kernel<<<blocks_for(n), kBlock, 0, stream>>>(flags, pos, n, list, count, total);
  KVO_CUDA_LAUNCHED("compact_tokens");
}

void gather_records(const uint8_t* store, int64_t host_bytes, const uint8_t* tails,
                    int64_t rec_bytes, const int32_t* list, const int32_t* count, int64_t max_n,
                    const int32_t* hit, uint8_t* cache, const int32_t* phase, uint8_t* staging,
                    cudaStream_t stream) {
  if (max_n == 0) return;
  // Host parts start at multiples of g = gcd(host_bytes, 16) into a 16-byte aligned store, so
  // one begins at most 16 - g bytes into its first chunk.
  int64_t g = 16;
  while (host_bytes % g != 0) g /= 2;
  const int host_chunks = int((host_bytes + 16 - g + 15) / 16);
  const int64_t threads = max_n * (host_chunks + (rec_bytes > host_bytes));
  auto launch = [&](auto unit) {
    gather_records_kernel<decltype(unit)><<<blocks_for(threads), kBlock, 0, stream>>>(
        store, host_bytes, tails, rec_bytes, host_chunks, list, count, max_n, hit, cache, phase,
        staging);
  };
  if (host_bytes % 4 == 0 && rec_bytes % 4 == 0)
    launch(uint32_t{});
  else
    launch(uint8_t{});
  KVO_CUDA_LAUNCHED("gather_records");
}

void match_cached_records(const int32_t* list, const int32_t* count, int64_t max_n, int64_t run,
                          int32_t* cached, int32_t* cached_count, const int32_t* phase,
                          int32_t* hit, unsigned long long* misses, cudaStream_t stream) {
  if (max_n == 0) return;
  match_cached_records_kernel<<<blocks_for(max_n), kBlock, 0, stream>>>(
      list, count, max_n, run, cached, cached_count, phase, hit, misses);
  KVO_CUDA_LAUNCHED("match_cached_records");
}

void split_records(const uint8_t* records, int64_t n, int64_t rec_bytes, int64_t host_bytes,
                   uint8_t* host_parts, uint8_t* tails, cudaStream_t stream) {
  if (n == 0) return;
  split_records_kernel<<<blocks_for(n * rec_bytes), kBlock, 0, stream>>>(
      records, n, rec_bytes, host_bytes, host_parts, tails);
  KVO_CUDA_LAUNCHED("split_records");
}

void assemble_middle(const int32_t* slot_chunk, const int32_t* slot_src, int H, int64_t S,
                     int64_t k, int64_t O, int C, int D, int64_t s_end, const bf16* outliers,
                     const SelectedSource& sel, bf16* dst, cudaStream_t stream) {
  if (S == 0) return;
  const int threads = std::min(128, (D / 2 + 31) / 32 * 32);
  assemble_middle_kernel<<<dim3(unsigned(S * C), unsigned(H)), threads, 0, stream>>>(
      slot_chunk, slot_src, S, k, O, C, D, s_end, outliers, sel, dst);
  KVO_CUDA_LAUNCHED("assemble_middle");
}

void gather_selected_u(const bf16* u, int64_t rank, const int32_t* slot_chunk,
                       const int32_t* slot_src, int H, int64_t S, int64_t k, int C, bf16* u_sel,
                       cudaStream_t stream) {
  if (S == 0 || k == 0) return;
  gather_selected_u_kernel<<<dim3(unsigned(S * C), unsigned(H)), 128, 0, stream>>>(
      u, rank, slot_chunk, slot_src, S, k, C, u_sel);
  KVO_CUDA_LAUNCHED("gather_selected_u");
}

void top_eigenvectors(const float* evecs, int64_t W, int64_t r, bf16* vt, cudaStream_t stream) {
  if (r == 0) return;
  top_eigenvectors_kernel<<<blocks_for(r * W), kBlock, 0, stream>>>(evecs, W, r, vt);
  KVO_CUDA_LAUNCHED("top_eigenvectors");
}

}  // namespace kvo::cuda
