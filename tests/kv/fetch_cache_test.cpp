// The fetch cache of the offloading policies (kv_spec.h --fetch-cache): a decode step moves over
// PCIe only the records the step before did not fetch, counted from the tokens each head
// attended (the policies' diagnostics; memory() reports the mean over the steps), the outputs
// are those of the policy without the cache, bit for bit, and a copied policy starts with an
// empty cache. On the CPU reference (which counts) and on CUDA (whose hits really come from the
// device copy; skipped without a GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <random>
#include <set>

#include "kv/kv_layout.h"
#include "kv/policy_steps.h"

namespace kvo {
namespace {

using testing::Inputs;

class FetchCache : public ::testing::TestWithParam<std::string> {};

// The records a step's selection fetches per layer, as the policies list them: per (token, head)
// tm * H + h, or tm for records spanning the heads (tm = token - first middle token).
std::vector<std::set<int64_t>> fetched_records(const std::vector<KvHeadDiagnostics>& heads,
                                               const KvLayout& lay, int H, int layers) {
  std::vector<std::set<int64_t>> out(static_cast<size_t>(layers));
  for (const KvHeadDiagnostics& d : heads)
    for (int64_t p : d.attended_positions)
      if (p >= lay.sink_end && p < lay.local_start)
        out[size_t(d.layer)].insert(lay.store_spans_heads ? p - lay.sink_end
                                                          : (p - lay.sink_end) * H + d.kv_head);
  return out;
}

TEST_P(FetchCache, FetchesOnlyRecordsTheStepBeforeDidNot) {
  auto backend = make_backend(GetParam() == "cuda" ? "auto" : "cpu", 0);
  if (backend->name() != GetParam()) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  const ModelConfig c = testing::small_config(64);
  const int64_t T = 300;
  // The prompt, then steps A (1 token), B (1 token with A's queries: A's selection again, all
  // hits at the same rows), C (2 tokens, the first with A's queries: some of B's records again,
  // at other rows, and new ones).
  std::mt19937_64 rng(21);
  std::vector<std::vector<Inputs>> steps;
  int64_t start = 0;
  for (int64_t n : {T, int64_t{1}, int64_t{1}, int64_t{2}}) {
    std::vector<Inputs> layers;
    for (int l = 0; l < c.num_layers; ++l) layers.push_back(testing::make_inputs(c, start, n, rng));
    steps.push_back(std::move(layers));
    start += n;
  }
  for (int l = 0; l < c.num_layers; ++l) {
    const std::vector<float>& a = steps[1][size_t(l)].q;
    steps[2][size_t(l)].q = a;
    std::copy(a.begin(), a.end(), steps[3][size_t(l)].q.begin());
  }
  const int64_t cap = T + 4;
  // Outliers off: outlier chunks are attended but never fetched.
  for (const char* text : {"yakv", "yakv:kv-store=higgs:d=2,n=256,group=128,budget=0.1",
                           "shadowkv:rank=32,budget=64,outliers=0"}) {
    SCOPED_TRACE(text);
    const KvSpec on = KvSpec::parse(text).resolved();
    const std::string t = text;
    const KvSpec off =
        KvSpec::parse(t + (t.find(':') == std::string::npos ? ":" : ",") + "fetch-cache=off")
            .resolved();
    ASSERT_TRUE(on.caches_fetches());
    ASSERT_FALSE(off.caches_fetches());
    auto cached = make_kv_policy(*backend, c, on, cap);
    auto plain = make_kv_policy(*backend, c, off, cap);
    auto copy = make_kv_policy(*backend, c, on, cap);
    dynamic_cast<KvDiagnosable&>(*cached).enable_diagnostics();
    const std::span<const std::vector<Inputs>> all(steps);
    testing::run(*backend, *cached, c, all.first(1), nullptr);
    testing::run(*backend, *plain, c, all.first(1), nullptr);
    copy->copy_from(*cached);
    const KvLayout lay = plan_kv_layout(on, c, T, cap, 2);
    ASSERT_TRUE(lay.fetch_cache);
    // The cache's bytes: the layout's item; on CUDA also where each listed record hits, the
    // phase (and the spanning records' counts of both sets).
    const int64_t scratch = GetParam() == "cuda"
                                ? lay.fetch_records * 4 + 4 +
                                      (lay.store_spans_heads ? 2 * int64_t(c.num_layers) * 4 : 0)
                                : 0;
    EXPECT_EQ(cached->memory().gpu_bytes - plain->memory().gpu_bytes,
              lay.item("fetch cache") + scratch);
    const int64_t tensors = on.method == "yakv" ? 2 : 1;
    const int64_t bytes = lay.store_host_bytes() * tensors;
    std::vector<std::set<int64_t>> before(static_cast<size_t>(c.num_layers));
    int64_t fresh_sum = 0, listed_sum = 0;
    for (size_t s = 1; s < steps.size(); ++s) {
      std::vector<std::vector<KvHeadDiagnostics>> diag;
      const auto got = testing::run(*backend, *cached, c, all.subspan(s, 1), &diag);
      const auto want = testing::run(*backend, *plain, c, all.subspan(s, 1), nullptr);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_EQ(got[i], want[i]) << "step " << s << " layer " << i;
      const auto now = fetched_records(diag[0], lay, c.num_kv_heads, c.num_layers);
      int64_t fresh = 0, listed = 0;
      for (size_t l = 0; l < now.size(); ++l) {
        std::vector<int64_t> d;
        std::set_difference(now[l].begin(), now[l].end(), before[l].begin(), before[l].end(),
                            std::back_inserter(d));
        fresh += int64_t(d.size());
        listed += int64_t(now[l].size());
      }
      EXPECT_GT(listed, 0);
      if (s == 1) {  // the copy's cache starts empty too
        EXPECT_EQ(testing::run(*backend, *copy, c, all.subspan(s, 1), nullptr), want);
        EXPECT_EQ(copy->memory().pcie_bytes_per_step, listed * bytes);
      }
      if (s == 2) EXPECT_EQ(fresh, 0) << "step B selects what step A fetched";
      if (s == 3) {
        EXPECT_GT(fresh, 0);
        EXPECT_LT(fresh, listed) << "step C reselects some of step B's records";
      }
      fresh_sum += fresh;
      listed_sum += listed;
      const int64_t n = int64_t(s);
      EXPECT_EQ(cached->memory().pcie_bytes_per_step, fresh_sum * bytes / n) << "step " << s;
      EXPECT_EQ(plain->memory().pcie_bytes_per_step, listed_sum * bytes / n) << "step " << s;
      before = now;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, FetchCache, ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace kvo
