// KV accounting: plan_kv_layout against hand-computed formulas for the Llama-3.1-8B and Qwen3-8B
// shapes (bench/configs), and memory() of running policies against the same function.
#include "kv/kv_layout.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "backend/cpu/cpu_backend.h"
#include "kv/kv_policy.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace kvo {
namespace {

ModelConfig bench_config(const std::string& name) {
  const std::string path = std::string(KVO_SOURCE_DIR) + "/bench/configs/" + name;
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hf_config(ss.str(), path);
}

constexpr int64_t KiB = 1024;

TEST(KvLayout, Llama31_8B_128K) {
  const ModelConfig c = bench_config("llama-3.1-8b.json");
  ASSERT_EQ(c.num_layers, 32);
  ASSERT_EQ(c.num_kv_heads, 8);
  ASSERT_EQ(c.head_dim, 128);
  const int64_t T = 131072, L = 32;
  const int64_t dense = T * 128 * KiB;  // 128 KiB per token (DESIGN.md §3)
  {
    KvLayout d = plan_kv_layout(KvSpec::parse("dense").resolved(), c, T, T, 2);
    EXPECT_EQ(d.gpu_bytes(), dense);
    EXPECT_EQ(d.gpu_bytes(), int64_t(16) << 30);
  }
  {  // yakv defaults: chunk 1, local 64, budget 4096, HIGGS 2-bit landmarks, 4-bit per-head K/V
    KvLayout y = plan_kv_layout(KvSpec::parse("yakv").resolved(), c, T, T, 2);
    const int64_t mid = T - 64, k = 4096;
    EXPECT_EQ(y.selected_chunks, k);
    EXPECT_FALSE(y.store_spans_heads);
    EXPECT_EQ(y.store_record_bytes, 128 / 2 + 4);  // 64 codes + fp32 scale per (token, head)
    EXPECT_EQ(y.store_scale_bytes, 4);             // kept on the device
    EXPECT_EQ(y.item("landmarks"), 8 * mid * (128 / 4 + 4) * L);
    EXPECT_EQ(y.item("exact K/V"), 64 * 1024 * 2 * 2 * L);
    EXPECT_EQ(y.item("gather buffers"), 2 * k * 1024 * 2 * 2);
    EXPECT_EQ(y.item("store scales"), 2 * mid * 8 * 4 * L);
    EXPECT_EQ(y.fetch_records, k * 8);
    // Two sets of whole K and V records and their lists.
    EXPECT_EQ(y.item("fetch cache"), 2 * k * 8 * (2 * 68 + 4) * L);
    EXPECT_EQ(y.gpu_bytes(), 8 * mid * 36 * L + 64 * 4096 * L + 2 * k * 4096 + 2 * mid * 8 * 4 * L +
                                 2 * k * 8 * 140 * L);
    EXPECT_EQ(y.item("keys"), mid * 8 * 64 * L);
    EXPECT_EQ(y.cpu_bytes(), 2 * mid * 8 * 64 * L);
    EXPECT_EQ(y.pcie_bytes_per_step, k * 8 * 64 * 2 * L);  // 134.2 MB
    EXPECT_NEAR(y.gpu_fraction_of_dense(), double(y.gpu_bytes()) / double(dense), 1e-12);
    // landmarks 7.0%, store scales 1.6%, fetch cache 1.7%
    EXPECT_LT(y.gpu_fraction_of_dense(), 0.106);
    KvLayout off = plan_kv_layout(KvSpec::parse("yakv:fetch-cache=off").resolved(), c, T, T, 2);
    EXPECT_EQ(off.item("fetch cache"), 0);
    EXPECT_EQ(off.gpu_bytes(), y.gpu_bytes() - y.item("fetch cache"));
    EXPECT_EQ(off.pcie_bytes_per_step, y.pcie_bytes_per_step);  // the step without hits
  }
  {  // DESIGN.md §3's group of all 8 heads: one 516-byte record per token, fetched whole for
     // each selected (token, head)
    KvLayout y = plan_kv_layout(
        KvSpec::parse("yakv:kv-store=higgs:d=2,n=256,group=1024").resolved(), c, T, T, 2);
    EXPECT_TRUE(y.store_spans_heads);
    EXPECT_EQ(y.store_record_bytes, 1024 / 2 + 4);  // 512 codes + fp32 scale
    EXPECT_EQ(y.item("store scales"), 2 * (T - 64) * 4 * L);
    EXPECT_EQ(y.cpu_bytes(), 2 * (T - 64) * 512 * L);
    EXPECT_EQ(y.pcie_bytes_per_step, 4096 * 8 * 512 * 2 * L);
    EXPECT_EQ(y.fetch_records, 4096 * 8);  // tokens, at most one per selected (token, head)
    EXPECT_EQ(y.item("fetch cache"), 2 * 4096 * 8 * (2 * 516 + 4) * L);
  }
  {  // yakv with an fp8 store: per (token, head) records of 128 bytes
    KvLayout y = plan_kv_layout(KvSpec::parse("yakv:kv-store=fp8").resolved(), c, T, T, 2);
    EXPECT_FALSE(y.store_spans_heads);
    EXPECT_EQ(y.store_scale_bytes, 0);
    EXPECT_EQ(y.cpu_bytes(), 2 * (T - 64) * 8 * 128 * L);
    EXPECT_EQ(y.pcie_bytes_per_step, 4096 * 8 * 128 * 2 * L);
  }
  {  // shadowkv defaults: chunk 8, 48 outliers, local 32, rank 160, budget 2048, bf16 values
    KvLayout s = plan_kv_layout(KvSpec::parse("shadowkv").resolved(), c, T, T, 2);
    const int64_t mid = T - 32, M = mid / 8, m = M - 48, k = 2048 / 8;
    EXPECT_EQ(s.middle_chunks, M);
    EXPECT_EQ(s.selected_chunks, k);
    EXPECT_EQ(s.rank, 160);
    EXPECT_EQ(s.item("low-rank U"), mid * 160 * 2 * L);
    EXPECT_EQ(s.item("low-rank SV"), 160 * 1024 * 2 * L);
    EXPECT_EQ(s.item("landmarks"), 8 * m * 128 * 2 * L);
    EXPECT_EQ(s.item("outlier K/V"), 8 * 48 * 8 * 128 * 2 * 2 * L);
    EXPECT_EQ(s.item("exact K/V"), 32 * 1024 * 2 * 2 * L);
    EXPECT_EQ(s.item("gather buffers"), 2 * 2048 * 1024 * 2 * 2);
    EXPECT_EQ(s.cpu_bytes(), mid * 1024 * 2 * L);
    EXPECT_EQ(s.pcie_bytes_per_step, 2048 * 8 * 128 * 2 * L);  // 128 MiB of values
    EXPECT_EQ(s.pcie_bytes_per_step, int64_t(128) << 20);
    EXPECT_EQ(s.item("fetch cache"), 2 * 2048 * 8 * (256 + 4) * L);  // values only
  }
  {  // quest keeps the whole cache and adds min/max page bounds
    KvLayout q = plan_kv_layout(KvSpec::parse("quest").resolved(), c, T, T, 2);
    const int64_t pages = (T - 16) / 16;
    EXPECT_EQ(q.item("K/V"), dense);
    EXPECT_EQ(q.item("page bounds"), pages * 1024 * 2 * 2 * L);
    EXPECT_EQ(q.cpu_bytes(), 0);
    EXPECT_EQ(q.pcie_bytes_per_step, 0);
    EXPECT_EQ(q.item("fetch cache"), 0);
    EXPECT_GT(q.gpu_fraction_of_dense(), 1.0);
  }
}

TEST(KvLayout, Qwen3_8B_32K) {
  const ModelConfig c = bench_config("qwen3-8b.json");
  ASSERT_EQ(c.num_layers, 36);
  ASSERT_EQ(c.num_kv_heads, 8);
  ASSERT_EQ(c.head_dim, 128);
  const int64_t T = 32768, L = 36;
  EXPECT_EQ(plan_kv_layout(KvSpec::parse("dense").resolved(), c, T, T, 2).gpu_bytes(),
            T * 2 * 36 * 8 * 128 * 2);
  {  // residual landmarks: per 4 landmarks one 2-bit meta (36 B) + four 1-bit residuals (20 B)
    KvLayout y = plan_kv_layout(
        KvSpec::parse("yakv:landmarks=residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256")
            .resolved(),
        c, T, T, 2);
    const int64_t mid = T - 64;
    ASSERT_EQ(mid % 4, 0);
    EXPECT_EQ(y.item("landmarks"), 8 * (mid / 4) * (36 + 4 * 20) * L);
    EXPECT_EQ(y.selected_chunks, 1024);
    EXPECT_EQ(y.pcie_bytes_per_step, 1024 * 8 * 64 * 2 * L);
  }
  {  // shadowkv with sinks and a token budget
    KvLayout s =
        plan_kv_layout(KvSpec::parse("shadowkv:sinks=5,budget=1000").resolved(), c, T, T, 2);
    EXPECT_EQ(s.sink_end, 8);  // rounded up to a chunk
    EXPECT_EQ(s.local_start, T - 32);
    const int64_t mid = T - 32 - 8;
    EXPECT_EQ(s.selected_chunks, 125);
    EXPECT_EQ(s.item("exact K/V"), (8 + 32) * 1024 * 2 * 2 * L);
    EXPECT_EQ(s.item("low-rank U"), mid * 160 * 2 * L);
    EXPECT_EQ(s.cpu_bytes(), mid * 2048 * L);
    EXPECT_EQ(s.pcie_bytes_per_step, 1000 * 8 * 256 * L);
  }
  {  // generated tokens reserve exact device rows
    KvLayout y = plan_kv_layout(KvSpec::parse("yakv").resolved(), c, T, T + 1024, 2);
    EXPECT_EQ(y.item("exact K/V"), (64 + 1024) * 1024 * 2 * 2 * L);
  }
}

// A 64-dim head (SmolLM2) gets 64-wide HIGGS groups inside residual landmarks too, not a padded
// 128 group: per 4 landmarks one 2-bit meta (16 B + 4 B scale) + four 1-bit residuals (8 + 4 B).
TEST(KvLayout, ResidualLandmarksOfNarrowHeadsAreNotPadded) {
  ModelConfig c = bench_config("qwen3-8b.json");
  c.head_dim = 64;
  const int64_t T = 8192, mid = T - 64;
  KvLayout y = plan_kv_layout(
      KvSpec::parse("yakv:landmarks=residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256")
          .resolved(),
      c, T, T, 2);
  EXPECT_EQ(y.item("landmarks"), 8 * (mid / 4) * (20 + 4 * 12) * 36);
}

// memory() of real policies equals the layout at the backend's 4 bytes per value.
// plan_kv_footprint (kvoffload bench --batch 0) at the 8B shape and 128K: dense is its two
// 2 MiB-rounded blocks; a sparse prefill also holds 3 (quest: 2) exact (capacity, W) stagings per
// layer; the CPU reference holds its layout, the CUDA policies the layout without the gather
// buffers but with their attention buffers (and scratch, well under a GiB).
TEST(KvFootprint, Llama31_8B_128K) {
  const ModelConfig c = bench_config("llama-3.1-8b.json");
  const int64_t T = 131064, cap = T + 8, W = 1024, L = 32, b = 2;
  const int64_t block = int64_t{2} << 20;
  const KvFootprint dense =
      plan_kv_footprint(KvSpec::parse("dense").resolved(), c, T, cap, b, /*cuda_policy=*/true);
  EXPECT_EQ(dense.gpu_bytes, 2 * ((cap * W * b * L + block - 1) / block * block));
  EXPECT_EQ(dense.prefill_gpu_bytes, 0);
  EXPECT_EQ(dense.cpu_bytes, 0);
  for (const char* text :
       {"yakv", "yakv:kv-store=higgs:d=2,n=256,group=1024", "shadowkv", "quest"}) {
    SCOPED_TRACE(text);
    const KvSpec spec = KvSpec::parse(text).resolved();
    const KvLayout lay = plan_kv_layout(spec, c, T, cap, b);
    const KvFootprint ref = plan_kv_footprint(spec, c, T, cap, b, false);
    const KvFootprint gpu = plan_kv_footprint(spec, c, T, cap, b, true);
    const int64_t stagings = spec.method == "quest" ? 2 : 3;
    EXPECT_EQ(ref.gpu_bytes, lay.gpu_bytes());
    EXPECT_EQ(ref.cpu_bytes, lay.cpu_bytes());
    EXPECT_EQ(ref.prefill_gpu_bytes, stagings * cap * W * b * L);
    EXPECT_EQ(gpu.prefill_gpu_bytes, ref.prefill_gpu_bytes);
    EXPECT_EQ(gpu.cpu_bytes, lay.cpu_bytes());
    const int64_t outliers = spec.method == "quest" ? 0 : lay.outlier_chunks;
    const int64_t attention_buffers =
        2 * (lay.exact_prompt_tokens() + (outliers + lay.selected_chunks) * lay.chunk + cap - T) *
        W * b;
    const int64_t held = lay.gpu_bytes() - lay.item("gather buffers") + attention_buffers;
    EXPECT_GE(gpu.gpu_bytes, held);
    EXPECT_LT(gpu.gpu_bytes, held + (int64_t{1} << 30));
  }
}

TEST(KvLayout, PoliciesReportTheirLayout) {
  LoadedModel m = load_hf_checkpoint(std::string(KVO_TEST_DATA_DIR) + "/fixtures/models/qwen3");
  auto backend = make_cpu_backend(0);
  Transformer model(*backend, m.config, m.weights);
  std::vector<int32_t> ids(300);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 11) % m.config.vocab_size);
  const int64_t T = int64_t(ids.size()), cap = T + 4;
  for (const char* text : {"shadowkv:rank=64,outliers=3,sinks=4", "yakv:outliers=2,chunk=2,sinks=3",
                           "yakv:kv-store=fp8,landmarks=residual:m=4,meta=higgs:d=4,n=256,res=bf16",
                           "quest:page=8,budget=64"}) {
    SCOPED_TRACE(text);
    const KvSpec spec = KvSpec::parse(text).resolved();
    auto kv = make_kv_policy(*backend, m.config, spec, cap);
    std::vector<float> logits = model.forward(ids, 0, *kv, 1, 128);
    kv->finish_prefill();
    const int32_t next[1] = {1};
    model.forward(next, T, *kv, 1);
    const KvLayout lay = plan_kv_layout(spec, m.config, T, cap, 4);
    const KvMemoryReport r = kv->memory();
    EXPECT_EQ(r.tokens, T + 1);
    EXPECT_EQ(r.gpu_bytes, lay.gpu_bytes());
    EXPECT_EQ(r.cpu_bytes, lay.cpu_bytes());
    EXPECT_EQ(r.pcie_bytes_per_step, lay.pcie_bytes_per_step);
    EXPECT_GT(lay.selected_chunks, 0);
  }
}

}  // namespace
}  // namespace kvo
