// HIGGS scores on CUDA in the rotated domain (higgs.h): per query a table lut[t][c] =
// grid[c] . (H q)_t in shared memory, then each key costs one table read per tuple.
//
// Layout and why it should stream at memory speed (d=4, n=256, group 128: a 36-byte record of
// 32 codes and the scale, a 32 KB table):
// - Keys reach shared memory only through cp.async, and each warp stages its own: a ring of two
//   slots of one to four chunks of 32 keys (128 keys, 4.6 KB for d=4), one slot in flight while
//   it scores the other, and it waits only for its own copies, never at a block barrier. Whole
//   records are one contiguous byte range, copied in 16-byte pieces (4-byte copies only at the
//   two ragged ends), so no register holds a load in flight. The block-wide tiles and
//   __syncthreads this replaced held d=4 at 65% of the read, 70% now (bench/RESULTS.md).
// - An SM runs 16 warps: two blocks of 8, or, where the tables are large (d=2's 64 KB, two
//   queries of d=4), one block of 16 that holds them once and so has room for slots of several
//   chunks (H200: d=2 one query 68 -> 78% of the read, d=4 GQA 8 +13%).
// - A warp step scores 32 / L keys: lane group hk = lane / L takes one key, its lane i the R
//   consecutive tuples i*R .. i*R+R-1 (one shared load of R codes; 8 lanes x 4 tuples for 32
//   tuples, 16 x 4 for 64). At sub-step r the lane reads tuple m = (r + hk) % R, stored in
//   column m*L + i: the key groups read different m, so the 32 reads of a step hit 32 different
//   banks whatever the codes, with ONE copy of the table. Slices of < 32 tuples (d=8, d=16,
//   large grids) give groups of keys a table copy each instead, as many as fit.
// - Each lane keeps L partial sums (the steps of a part, times the queries of the block) and
//   one transposing butterfly per chunk of 32 keys (L - 1 shuffles) leaves each (query, key)
//   total in one lane. Per key and query that is ~4.5 warp instructions of table work (byte
//   permute, multiply-add, load, add per lookup) plus ~1 of reduction and ~1.5 of staging and
//   output (Nsight Compute counted 9.0 in all), against a budget of ~12 at 70% of the H200's
//   read bandwidth (85 G records/s over 132 SMs at 1.98 GHz: 3 SM cycles of 4 issue slots per
//   record); shared-memory traffic is ~1.6 wavefronts per key of the 3 cycles.
// - GQA: two query heads of one KV head share a block when their tables fit in 64 KB (d=4),
//   so each staged code feeds both; further query sets run in neighbouring blocks that find the
//   same keys in L2.
// - Tables above 64 KB (group 1024, grids of 4096 points) are split into tuple slices, one
//   launch each that stages only its slice's codes and the scale of each key (4-byte copies),
//   the later launches adding to the scores in slice order (deterministic).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "quant/cuda/device_quantizer.h"
#include "quant/cuda/grid_tables.cuh"
#include "quant/cuda/launch.cuh"
#include "quant/cuda/warp_hadamard.cuh"
#include "quant/device.h"

namespace kvo::quant::cuda {
namespace {

constexpr size_t kLutBytes = 64 * 1024;  // the tables of one block
constexpr int kChunkKeys = 32;  // keys per chunk (scored 32 / QB at a time); a slot holds chunks
constexpr int kOverread = 64;   // the lanes of a key read <= 64 bytes of a row

struct ScoreShape {
  int h, p, T, npts;         // group, tuple size, tuples per record, grid points
  int t0, TS, lanes, W;      // slice: first tuple, tuples, lanes per key in use, table columns
  int copies, table_stride;  // table copies (1, 2, 4) and floats per query table (+1 zero word)
  bool whole;                // one slice: records staged whole, else slice codes + scale per key
  int row, scale_off;        // bytes per staged key and offset of its scale
  int chunks, slot_bytes;    // chunks of kChunkKeys keys per slot, bytes per slot
  int depth;                 // slots in a warp's ring
  size_t dim, rec, codes_bytes, head_bytes, n_keys, keys_per_block;
  int num_q_heads, group, per_head, sets_per_head;  // per_head = n_rows * group queries
  int64_t q_stride;
  float factor;     // scale / h
  bool accumulate;  // add to the scores of earlier slices
};

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(dst)), "l"(src));
}
// A shared-memory load from a 32-bit shared address: the lookup address needs no base added.
__device__ __forceinline__ float lds_f32(uint32_t addr) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr));
  return v;
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
// Waits until at most `pending` (depth - 2: 0 or 1) groups are outstanding.
__device__ __forceinline__ void cp_async_wait(int pending) {
  if (pending == 0)
    asm volatile("cp.async.wait_group 0;\n" ::);
  else
    asm volatile("cp.async.wait_group 1;\n" ::);
}

// v as an opaque value: the compiler otherwise sinks the lane's selectors and table addresses
// into the key loop and recomputes them for every chunk.
__device__ __forceinline__ uint32_t pinned(uint32_t v) {
  asm volatile("" : "+r"(v));
  return v;
}

template <int LB>
__device__ __forceinline__ uint32_t load_word(const uint8_t* p) {
  if constexpr (LB == 1) return p[0];
  if constexpr (LB == 2) return *reinterpret_cast<const uint16_t*>(p);
  return *reinterpret_cast<const uint32_t*>(p);
}

// Byte selector for __byte_perm(w, 0, sel) that extracts code m (CB bytes) of w zero-extended;
// 0x4444 (all bytes from the zero operand) reads code 0 for tuples a lane must not count.
template <int CB>
__device__ __forceinline__ uint32_t code_selector(int m) {
  if constexpr (CB == 1) return 0x4440u | uint32_t(m);
  return 0x4400u | (uint32_t(2 * m + 1) << 4) | uint32_t(2 * m);
}

// Sums the N partial sums of each group of N lanes transposed: each step hands half of the
// values to the partner lane (xor OFF) and keeps the other half, so after OFF = N/2 .. 1 lane i
// of a group holds the total of value i in acc[0]. Every index is static: acc stays in registers.
template <int OFF, int V, int N>
__device__ __forceinline__ void transpose_reduce(float (&acc)[N], int lane) {
  const bool upper = lane & OFF;
#pragma unroll
  for (int i = 0; i < V / 2; ++i) {
    const float send = upper ? acc[i] : acc[i + V / 2];
    const float keep = upper ? acc[i + V / 2] : acc[i];
    acc[i] = keep + __shfl_xor_sync(kFullMask, send, OFF);
  }
  if constexpr (OFF > 1) transpose_reduce<OFF / 2, V / 2, N>(acc, lane);
}

// The warp's copies of keys [k0, k1) (at most a slot's) of `head` into its slot buf (one
// commit group is the caller's): whole records back to back from byte (head + k0*rec) % 16 on,
// or per key a row of the slice's code words then the scale. Bytes after the keys, up to the
// end of the slot, become zero, so the rows past a short last chunk read as code 0.
template <int CB>
__device__ __forceinline__ void stage_slot(const ScoreShape& S, const uint8_t* head, size_t k0,
                                           size_t k1, uint8_t* buf, int lane) {
  int used = 0;  // bytes of buf the copies fill
  if (S.whole) {
    // Byte x of buf is byte x of the 16-byte aligned range from lo: the whole 16-byte blocks
    // [first16, last16), then the 4-byte words of the records in the blocks at either end.
    const uint8_t* a = head + k0 * S.rec;
    const int skip = int(reinterpret_cast<uintptr_t>(a) % 16);
    const uint8_t* lo = a - skip;
    used = skip + int((k1 - k0) * S.rec);
    const int first16 = (skip + 15) / 16 * 16, last16 = used / 16 * 16;
    const uint8_t* src = lo + first16 + 16 * lane;
    const uint32_t end = smem_addr(buf) + last16;
    for (uint32_t dst = smem_addr(buf) + first16 + 16 * lane; dst < end;
         dst += 16 * 32, src += 16 * 32)
      cp_async16(dst, src);
    if (lane < 8) {
      const bool before = lane < 4;
      const int w = before ? 4 * lane : last16 + 4 * (lane - 4);
      if (before ? w >= skip && w < min(first16, used) : w >= first16 && w < used)
        cp_async4(buf + w, lo + w);
    }
  } else {
    // Word w of row k: codes of tuples t0 + 4w/CB.. while inside the record's codes, zero past
    // them (tuples >= T, never counted), the scale last. Walked without divisions.
    const int words = S.row / 4, nk = int(k1 - k0);
    used = nk * S.row;
    int k = lane / words, w = lane % words;
    const int dk = 32 / words, dw = 32 % words;
    for (; k < nk; k += dk, w += dw) {
      if (w >= words) {
        w -= words;
        ++k;
        if (k >= nk) break;
      }
      uint8_t* dst = buf + k * S.row + 4 * w;
      const uint8_t* rec = head + (k0 + size_t(k)) * S.rec;
      const size_t off = w == words - 1 ? S.codes_bytes : size_t(S.t0) * CB + 4 * size_t(w);
      if (off < S.codes_bytes || w == words - 1)
        cp_async4(dst, rec + off);
      else
        *reinterpret_cast<uint32_t*>(dst) = 0u;
    }
  }
  if (k1 - k0 < size_t(kChunkKeys) * S.chunks)
    for (int x = (used + 3) / 4 * 4 + 4 * lane; x < S.slot_bytes; x += 4 * 32)
      *reinterpret_cast<uint32_t*>(buf + x) = 0u;
}

// blockIdx.x: a set of up to QB queries of one KV head (kv = x / sets_per_head), so the sets
// of a KV head run side by side and share its keys in L2; blockIdx.y: a run of keys_per_block
// keys (a multiple of NW slots; warp w takes slots w, w + NW, ...). CB: bytes per code, R: tuples
// per lane, L: lanes per key (a warp step scores 32 / L keys), QB: queries per block, NW: warps
// per block, 8 or 16: an SM runs 16 warps, as two blocks of 8 or one of 16 (launch_slice).
// Capping the registers for 24 warps (80) cost d=2 a tenth of its rate (H200: 59.8 against 65.1%
// of the read).
template <int CB, int R, int L, int QB, int NW>
__global__ void __launch_bounds__(NW * 32, 16 / NW)
    higgs_score_kernel(const uint16_t* __restrict__ q, ScoreShape S,
                       const uint8_t* __restrict__ keys, const float* __restrict__ pts,
                       float* __restrict__ scores) {
  constexpr int KPS = 32 / L;     // keys per warp step
  constexpr int kSteps = L / QB;  // steps per part: L partial sums per lane, QB parts a chunk
  extern __shared__ __align__(16) uint8_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, hk = lane / L, i = lane % L;
  uint8_t* ring = smem + warp * S.depth * S.slot_bytes;  // this warp's [depth][slot_bytes]
  float* lut = reinterpret_cast<float*>(smem + NW * S.depth * S.slot_bytes);  // [QB][table_stride]
  float* qrot = lut + QB * S.table_stride;                                    // [h]

  const int kv = blockIdx.x / S.sets_per_head;
  const int first = (blockIdx.x % S.sets_per_head) * QB, nq = min(QB, S.per_head - first);
  const uint8_t* head = keys + size_t(kv) * S.head_bytes;
  const size_t begin = size_t(blockIdx.y) * S.keys_per_block;
  const size_t end = min(S.n_keys, begin + S.keys_per_block);
  const size_t slot_keys = size_t(kChunkKeys) * S.chunks;
  const int block_slots = int((end - begin + slot_keys - 1) / slot_keys);
  const int slots = block_slots > warp ? (block_slots - warp + NW - 1) / NW : 0;
  const auto slot_begin = [&](int n) { return begin + size_t(warp + n * NW) * slot_keys; };
  const auto stage = [&](int n, uint8_t* slot) {
    const size_t k0 = slot_begin(n);
    stage_slot<CB>(S, head, k0, min(end, k0 + slot_keys), slot, lane);
  };

  // The first slots load while the tables are built.
  for (int n = 0; n + 1 < S.depth; ++n) {
    if (n < slots) stage(n, ring + n * S.slot_bytes);
    cp_async_commit();
  }

  for (int g = 0; g < QB; ++g) {
    float* lt = lut + g * S.table_stride;
    if (g < nq) {
      const int j = first + g, r = j / S.group, hq = kv * S.group + j % S.group;
      const uint16_t* qv = q + int64_t(r) * S.q_stride + int64_t(hq) * int64_t(S.dim);
      for (int k = threadIdx.x; k < S.h; k += NW * 32)
        qrot[k] = size_t(k) < S.dim ? bf16_to_float(qv[k]) : 0.0f;
      __syncthreads();
      if (threadIdx.x < 32) warp_hadamard_smem(qrot, S.h, threadIdx.x);
      __syncthreads();
    }
    // Column col of copy col / TS holds tuple t0 + i*R + m, m = (col % TS) / lanes,
    // i = (col % TS) % lanes (the lane's sub-step column below); tuples >= T are zero.
    for (int idx = threadIdx.x; idx < S.table_stride; idx += NW * 32) {
      const int c = idx / S.W, col = idx % S.W % S.TS;
      const int t = S.t0 + (col % S.lanes) * R + col / S.lanes;
      float acc = 0.0f;
      if (g < nq && c < S.npts && t < S.T)
        for (int j = 0; j < S.p; ++j)
          if (t * S.p + j < S.h) acc = fmaf(pts[c * S.p + j], qrot[t * S.p + j], acc);
      lt[idx] = acc;  // idx = npts * W: the zero word read by idle lanes
    }
    __syncthreads();  // qrot is the next query's
  }

  // Per sub-step r: the code selector and the shared address of this lane's table column (idle
  // lanes read code 0 at the zero word after the table), so a lookup is a byte permute, one
  // multiply-add and the load.
  uint32_t sel[R], at[R];
  const uint32_t lut_at = smem_addr(lut), row_bytes = 4u * uint32_t(S.W);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int m = (r + hk) % R;
    const bool active = i < S.lanes, counted = active && S.t0 + i * R + m < S.T;
    sel[r] = pinned(counted ? code_selector<CB>(m) : 0x4444u);
    const int copy = hk / R % S.copies;
    const int col = active ? copy * S.TS + m * S.lanes + i : S.npts * S.W;
    at[r] = pinned(lut_at + 4u * uint32_t(col));
  }
  const uint32_t table_bytes = 4u * uint32_t(S.table_stride);
  // After the reduction lane i holds value i: query g = i / kSteps of the set, step i % kSteps.
  const int my_g = i / kSteps, my_step = i % kSteps;
  float* my_out = nullptr;
  if (my_g < nq) {
    const int j = first + my_g, r = j / S.group, hq = kv * S.group + j % S.group;
    my_out = scores + (size_t(r) * S.num_q_heads + size_t(hq)) * S.n_keys;
  }

  // The warp's ring: its n-th slot of keys is in slot n % depth (cur), its (n + depth - 1)-th is
  // staged into the one the (n - 1)-th used (fill). It waits only for its own copies.
  int cur = 0, fill = S.depth - 1;
  for (int n = 0; n < slots; ++n) {
    cp_async_wait(S.depth - 2);
    __syncwarp();  // every lane's copies of slot n are in; every lane is done with slot n - 1
    if (n + S.depth - 1 < slots) stage(n + S.depth - 1, ring + fill * S.slot_bytes);
    cp_async_commit();

    const size_t k0 = slot_begin(n);
    const int nk = int(min(slot_keys, end - k0));
    const uint8_t* buf = ring + cur * S.slot_bytes +
                         (S.whole ? int(reinterpret_cast<uintptr_t>(head + k0 * S.rec) % 16) : 0);
    cur = cur + 1 == S.depth ? 0 : cur + 1;
    fill = fill + 1 == S.depth ? 0 : fill + 1;
    // The slot in parts of kChunkKeys / QB keys, each scored for all QB queries.
#pragma unroll 1
    for (int part = 0; part < QB * S.chunks; ++part) {
      const int row0 = part * KPS * kSteps;  // first key of the part
      if (row0 >= nk) break;
      // Group hk takes keys row0 + hk*kSteps + s: the rows read at once lie kSteps records
      // apart, which puts their code words in disjoint banks for 36-, 68- and 20-byte records.
      const uint8_t* rp = buf + (row0 + hk * kSteps) * S.row + i * R * CB;
      float acc[L];  // acc[g * kSteps + s]: query g of the set, step s; set by sub-step 0
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const uint32_t w = load_word<R * CB>(rp + s * S.row);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const uint32_t a = __byte_perm(w, 0u, sel[r]) * row_bytes + at[r];
#pragma unroll
          for (int g = 0; g < QB; ++g) {
            const float x = lds_f32(a + g * table_bytes);
            acc[g * kSteps + s] = r == 0 ? x : acc[g * kSteps + s] + x;
          }
        }
      }
      transpose_reduce<L / 2, L, L>(acc, lane);
      const int row = row0 + hk * kSteps + my_step;
      if (my_out && row < nk) {
        const float v =
            acc[0] * *reinterpret_cast<const float*>(buf + row * S.row + S.scale_off) * S.factor;
        float* o = my_out + k0 + row;
        *o = S.accumulate ? *o + v : v;
      }
    }
  }
}

template <int CB, int R, int L, int QB>
void launch_slice(const uint16_t* d_q, const ScoreShape& S, int kv_heads, const uint8_t* d_keys,
                  const float* pts, float* d_scores, cudaStream_t stream) {
  ScoreShape s = S;
  int dev = 0, per_sm = 0, per_block = 0;
  KVO_CUDA_CHECK(cudaGetDevice(&dev));
  KVO_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
  KVO_CUDA_CHECK(cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const size_t sets = size_t(kv_heads) * size_t(s.sets_per_head);
  const auto slot_bytes = [&](int chunks) {
    return ((s.whole ? 16 : 0) + kChunkKeys * chunks * s.row + kOverread + 15) / 16 * 16;
  };
  const auto smem_bytes = [&](int warps, int chunks, int depth) {
    return size_t(warps) * depth * slot_bytes(chunks) +
           (size_t(QB) * s.table_stride + s.h) * sizeof(float);
  };
  // 1 KB per block is the system's.
  const auto warps_per_sm = [&](int warps, int chunks, int depth) {
    return warps * int(size_t(per_sm) / (smem_bytes(warps, chunks, depth) + 1024));
  };
  // Two slots a warp, as large as keeps 16 warps an SM. H200, d=4 one query, (chunks a slot,
  // slots) in blocks of 8 warps, at <= 80 registers: (4, 2) 70.3% of the read, (2, 2) 62.2%,
  // (2, 3) 59.8%, (8, 2) at one block an SM 58.4%, (1, 3) 46.2%; one-chunk slots at up to 8 deep
  // held d=4 at 49-54%: the ring's per-slot work needs slots of several chunks. One block of 16
  // warps holds the table once, leaving room for larger slots where the table is large (d=2;
  // two queries of d=4).
  s.depth = 2;
  int warps = 8;
  s.chunks = 4;
  while (s.chunks > 1 && warps_per_sm(8, s.chunks, s.depth) < 16) s.chunks /= 2;
  for (int c = 4; c > s.chunks; c /= 2)
    if (warps_per_sm(16, c, s.depth) >= 16) {
      warps = 16;
      s.chunks = c;
    }
  s.slot_bytes = slot_bytes(s.chunks);
  const size_t smem = smem_bytes(warps, s.chunks, s.depth);
  if (smem > size_t(per_block))
    throw_error("score_heads: " + std::to_string(smem) + " bytes of shared memory needed, " +
                std::to_string(per_block) + " available");
  auto* kernel =
      warps == 16 ? higgs_score_kernel<CB, R, L, QB, 16> : higgs_score_kernel<CB, R, L, QB, 8>;
  const int resident = resident_blocks(kernel, 32 * warps, smem, size_t(1) << 30);
  // One wave: each set of queries gets resident / sets runs of whole tiles (a slot a warp),
  // rounded down: one more run a set can start a second wave (H200, d=2 GQA 8 in 16-warp blocks:
  // 136 blocks on 132 resident, 260 against 477 GB/s).
  const size_t runs_wanted = std::max<size_t>(1, size_t(resident) / sets);
  const size_t tile_keys = size_t(warps) * kChunkKeys * s.chunks;
  const size_t tiles = (S.n_keys + tile_keys - 1) / tile_keys;
  s.keys_per_block = tile_keys * ((tiles + runs_wanted - 1) / runs_wanted);
  const size_t runs = (S.n_keys + s.keys_per_block - 1) / s.keys_per_block;
  if (runs > 65535 || sets > 0x7fffffffu)
    throw_error("score_heads: " + std::to_string(sets) + " query sets x " + std::to_string(runs) +
                " key runs is too large a grid");
  kernel<<<dim3(unsigned(sets), unsigned(runs)), 32 * warps, smem, stream>>>(d_q, s, d_keys, pts,
                                                                             d_scores);
  KVO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void score_heads(const HiggsQuantizer& q, const uint16_t* d_q, int64_t q_stride, size_t n_rows,
                 int num_q_heads, int group, const uint8_t* d_keys, size_t n_keys, size_t dim,
                 float scale, float* d_scores, cudaStream_t stream) {
  auto reject = [&](const std::string& why) {
    throw_error("score_heads(" + q.spec() + "): " + why);
  };
  if (!higgs_tuple_supported(q.p())) reject("no CUDA kernel for this tuple size");
  if (dim < 1 || dim > size_t(q.group()))
    reject("records must hold one Hadamard group, dim " + std::to_string(dim) +
           " is above the group");
  if (num_q_heads < 1 || group < 1 || num_q_heads % group != 0)
    reject(std::to_string(num_q_heads) + " query heads cannot form GQA groups of " +
           std::to_string(group));
  if (q_stride < int64_t(num_q_heads) * int64_t(dim))
    reject("query row stride " + std::to_string(q_stride) + " below heads x dim");
  if (reinterpret_cast<uintptr_t>(d_keys) % 4 != 0) reject("keys must be 4-byte aligned");
  const size_t n_queries = n_rows * size_t(num_q_heads);
  if (n_queries == 0 || n_keys == 0) return;
  if (n_rows * size_t(group) > 0x7fffffffu) reject("too many queries per KV head");
  ScoreShape S{};
  S.h = q.group();
  S.p = q.p();
  S.T = q.tuples();
  S.npts = q.n_points();
  S.dim = dim;
  S.rec = q.bytes_per_vector(dim);
  S.codes_bytes = q.codes_bytes(dim);
  S.head_bytes = q.encoded_bytes(n_keys, dim);
  S.n_keys = n_keys;
  S.num_q_heads = num_q_heads;
  S.group = group;
  S.per_head = int(n_rows * size_t(group));
  S.q_stride = q_stride;
  S.factor = scale / float(S.h);
  const int cb = q.code_bytes();
  const size_t table_bytes = sizeof(float) * size_t(S.npts);  // per table column
  const size_t fit = std::max<size_t>(1, kLutBytes / table_bytes);
  // Slice width TS: the most tuples (a power of two) whose table fits, at most 64 (16 for
  // two-byte codes) so that a lane's codes are one load of <= 4 bytes.
  int TS = 1;
  while (size_t(TS) * 2 <= fit && TS < S.T && TS < (cb == 1 ? 64 : 16)) TS *= 2;
  if (TS * cb % 4 != 0) reject("grid too large for a table slice of 4 code bytes");
  // R tuples per lane, L lanes per key: 16 one-byte codes are 4 lanes x 4 (8 keys a step: the
  // short records of d=8 need the fewer shuffles per key), 32 tuples are 8 lanes x 4, 64 are
  // 16 x 4; narrower slices, and 16 two-byte codes, keep 8 lanes per key (4 keys per step) with
  // 2, 1 tuples each (idle lanes below 8).
  const bool four = TS >= 32 || (TS == 16 && cb == 1);
  const int R = four ? 4 : TS == 16 ? 2 : 1, L = four ? std::max(4, TS / 4) : 8;
  S.TS = TS;
  S.lanes = std::min(L, TS);
  // The keys of a step read different sub-step columns m when R >= keys per step; otherwise
  // groups of R keys take a table copy each, as many as fit.
  S.copies = std::max(1, (32 / L) / R);
  while (S.copies > 1 && size_t(S.copies * TS) > fit) S.copies /= 2;
  S.W = S.copies * TS;
  S.table_stride = S.npts * S.W + 1;
  S.whole = S.T <= TS;
  S.row = S.whole ? int(S.rec) : TS * cb + 4;
  S.scale_off = S.whole ? int(S.codes_bytes) : TS * cb;
  // Queries per block: two of one KV head when both tables fit.
  const int qb = S.per_head >= 2 && size_t(2 * S.W) * table_bytes <= kLutBytes ? 2 : 1;
  S.sets_per_head = (S.per_head + qb - 1) / qb;
  const int kv_heads = num_q_heads / group;
  const float* pts = device_grid(q.grid()).points;
  using I1 = std::integral_constant<int, 1>;
  using I2 = std::integral_constant<int, 2>;
  using I4 = std::integral_constant<int, 4>;
  using I8 = std::integral_constant<int, 8>;
  using I16 = std::integral_constant<int, 16>;
  for (int t0 = 0; t0 < S.T; t0 += TS) {
    S.t0 = t0;
    S.accumulate = t0 > 0;
    auto go = [&](auto cbc, auto rc, auto lc) {
      constexpr int CB = decltype(cbc)::value, RC = decltype(rc)::value, LC = decltype(lc)::value;
      if (qb == 2)
        launch_slice<CB, RC, LC, 2>(d_q, S, kv_heads, d_keys, pts, d_scores, stream);
      else
        launch_slice<CB, RC, LC, 1>(d_q, S, kv_heads, d_keys, pts, d_scores, stream);
    };
    if (cb == 2)
      R == 2 ? go(I2{}, I2{}, I8{}) : go(I2{}, I1{}, I8{});
    else if (L == 16)
      go(I1{}, I4{}, I16{});
    else if (L == 4)
      go(I1{}, I4{}, I4{});
    else
      R == 4 ? go(I1{}, I4{}, I8{}) : R == 2 ? go(I1{}, I2{}, I8{}) : go(I1{}, I1{}, I8{});
  }
}

}  // namespace kvo::quant::cuda
