// The data layout and byte accounting of every KV policy: which regions of the prompt stay
// exact on the device, how many chunks get landmarks, how many are selected, and the bytes of
// every allocation on the device (GPU) and in host memory (CPU), plus the bytes one decode step
// moves host -> device. One function, plan_kv_layout, serves both the policies (they size
// their allocations from it, so memory() reports what they hold) and `kvoffload info`
// (which cannot allocate a 128K-token cache of an 8B model here).
//
// Regions of a prompt of T tokens, chunk C (quest: page), per layer and KV head:
//   sinks   [0, sink_end)            sink_end = min(T, ceil(sinks / C) * C), exact on device
//   middle  [sink_end, local_start)  M whole chunks; the offloaded / selectable part
//   local   [local_start, T)         local_start = max(sink_end, floor((T - local) / C) * C)
//                                    (>= `local` tokens, the partial last chunk included)
//   outliers: min(outliers, M) middle chunks per KV head, exact on device, no landmark
//   candidates: the other M - O chunks, one landmark each; k = min(M - O, ceil(budget / C))
//   generated: capacity - T tokens, exact on device
//
// Bytes (L layers, H kv heads, D head_dim, W = H * D, b = device bytes per value: 2 for the
// CUDA bf16 layout that `info` reports, the backend's dtype size for a running policy):
//   every sparse method
//     gpu exact K/V      (sink_end + T - local_start + capacity - T) * W * b * 2 * L
//     gpu outliers K/V   H * O * C * D * b * 2 * L
//     gpu gather buffers one layer's selected K and V, double-buffered (next layer's fetch
//                        overlaps this layer's attention): 2 * (k * C) * W * b * 2
//   shadowkv
//     gpu U              (M * C) * r * b * L   (rows of the middle tokens; r = min(rank, T, W))
//     gpu SV^T           r * W * b * L
//     gpu landmarks      H * (M - O) * D * b * L   (means of post-RoPE keys)
//     cpu values         (M * C) * R_v * L      R_v = value bytes per token (see records)
//     pcie per step      k * C * H * r_v * L   (values only; keys are rebuilt on the device)
//   yakv
//     gpu landmarks      H * Q_lm.encoded_bytes(M - O, D) * L
//     cpu keys + values  (M * C) * R * 2 * L
//     pcie per step      k * C * H * r * 2 * L
//   quest
//     gpu K/V            capacity * W * b * 2 * L   (the whole cache; nothing offloaded)
//     gpu page bounds    (M - O) * W * 2 * b * L   (per-channel min and max)
//     cpu 0, pcie 0
// Records of the offloaded store: per (token, head) r = Q.encoded_bytes(1, D), R = H * r,
// unless the quantizer is HIGGS with a group wider than a head: then one record per token,
// R = Q.encoded_bytes(1, W), and a selected (token, head) costs the whole record over PCIe
// (r = R; the static figure assumes no two heads select the same token).
// HIGGS records keep their fp32 scales (s bytes, 4 per group) on the device and only the codes
// (r - s bytes, whole 16-byte words: 64 per 128-dim head at d=2) in host memory, so a fetch
// reads whole 32-byte sectors instead of 68-byte records straddling three (96 bytes read):
//     gpu store scales   records * s * tensors * L   (records = M * C, times H unless spanning)
//     cpu and pcie above count r - s per record instead of r.
// The fetch cache (--fetch-cache on, the default for yakv and shadowkv): per layer, the records
// the latest decode step fetched stay on the device, whole, with their list (one int32 each),
// so a step fetches only the records it selects anew; two such sets, used by turns (a step reads
// the latest step's and fills the other, with no copy between them):
//     gpu fetch cache    2 * F * (R_f * tensors + 4) * L   F = records a step fetches at most
//                        (fetch_records: H * k * C, spanning records min(that, M * C)), R_f the
//                        whole record (r or R with its scales), tensors 2 for yakv, 1 shadowkv
//     pcie per step      the static figure above is a step without hits (an upper bound for
//                        spanning records, which heads share); a running policy's memory()
//                        reports the mean over its decode steps of the records really fetched
//                        (with the cache, those the step before had not).
// The CUDA policies (kv/cuda) keep every item above except the gather buffers: they assemble one
// layer's attended K/V, (exact prompt + (O + k) * C + capacity - T) * W * b * 2, and hold fetch
// scratch (staging and decoded records, scores); their memory() reports those allocations, and
// as PCIe bytes the records the latest step fetched (a spanning record once per selected token).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kv/kv_spec.h"
#include "model/config.h"

namespace kvo {

struct KvLayoutItem {
  std::string name;
  int64_t bytes = 0;
};

struct KvLayout {
  std::string method;
  int64_t prompt_tokens = 0, capacity = 0;
  int64_t chunk = 1;
  int64_t sink_end = 0, local_start = 0;
  int64_t middle_chunks = 0, outlier_chunks = 0, landmark_chunks = 0, selected_chunks = 0;
  int64_t rank = 0;                // shadowkv's effective rank
  int64_t store_record_bytes = 0;  // per (token, head) or per token (spans_heads)
  int64_t store_scale_bytes = 0;   // of each record, kept on the device (HIGGS scales)
  bool store_spans_heads = false;
  int64_t fetch_records = 0;  // records of each offloaded tensor a step fetches at most, per layer
  bool fetch_cache = false;
  std::vector<KvLayoutItem> gpu, cpu;
  int64_t pcie_bytes_per_step = 0;
  int64_t dense_gpu_bytes = 0;  // the dense cache of the same capacity at the same b

  int64_t middle_tokens() const { return middle_chunks * chunk; }
  int64_t exact_prompt_tokens() const { return sink_end + prompt_tokens - local_start; }
  // Host bytes of a record: what a fetch moves over PCIe.
  int64_t store_host_bytes() const { return store_record_bytes - store_scale_bytes; }
  int64_t gpu_bytes() const;
  int64_t cpu_bytes() const;
  int64_t item(const std::string& name) const;  // bytes of a named gpu or cpu item; 0 if none
  double gpu_fraction_of_dense() const {
    return dense_gpu_bytes ? double(gpu_bytes()) / double(dense_gpu_bytes) : 0.0;
  }
};

// `spec` must be resolved(). capacity >= prompt_tokens (generated tokens = the difference).
KvLayout plan_kv_layout(const KvSpec& spec, const ModelConfig& config, int64_t prompt_tokens,
                        int64_t capacity, int device_value_bytes);

// What one sequence's policy allocates where it runs, for sizing a batch before anything is
// allocated (kvoffload bench --batch 0). cuda_policy: the CUDA policies (kv/cuda: attention
// buffers and fetch scratch instead of the gather buffers, each device allocation rounded up to
// the 2 MiB the CUDA allocators hand out); else the layout as it is.
struct KvFootprint {
  int64_t gpu_bytes = 0;          // held on the device after finish_prefill
  int64_t prefill_gpu_bytes = 0;  // more held during the prefill (exact staging of every layer)
  int64_t cpu_bytes = 0;          // pinned host memory
};
KvFootprint plan_kv_footprint(const KvSpec& spec, const ModelConfig& config, int64_t prompt_tokens,
                              int64_t capacity, int device_value_bytes, bool cuda_policy);

}  // namespace kvo
