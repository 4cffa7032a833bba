// Selection: the score aggregation and top-k rules, and each sparse policy picking the right
// tokens on hand-made keys where the answer is known.
#include "kv/selection.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "kv/kv_policy.h"
#include "model/rope.h"

namespace kvo {
namespace {

TEST(Selection, SoftmaxSumOverPositionsThenGroupMaxOrMean) {
  // 2 query heads x 2 positions x 3 landmarks.
  const float l[12] = {0,
                       0,
                       std::log(2.0f),  // head 0, pos 0: probs 1/4 1/4 1/2
                       0,
                       0,
                       0,  // head 0, pos 1: 1/3 each
                       std::log(3.0f),
                       0,
                       0,  // head 1, pos 0: 3/5 1/5 1/5
                       0,
                       0,
                       0};
  const auto mx = aggregate_landmark_scores(l, 2, 2, 3, GroupAgg::Max);
  EXPECT_NEAR(mx[0], 3.0 / 5 + 1.0 / 3, 1e-6);
  EXPECT_NEAR(mx[1], 1.0 / 4 + 1.0 / 3, 1e-6);
  EXPECT_NEAR(mx[2], 1.0 / 2 + 1.0 / 3, 1e-6);
  const auto mean = aggregate_landmark_scores(l, 2, 2, 3, GroupAgg::Mean);
  EXPECT_NEAR(mean[0], (1.0 / 4 + 1.0 / 3 + 3.0 / 5 + 1.0 / 3) / 2, 1e-6);
  EXPECT_NEAR(mean[2], (1.0 / 2 + 1.0 / 3 + 1.0 / 5 + 1.0 / 3) / 2, 1e-6);
}

TEST(Selection, TopKTiesGoToTheLowestIndex) {
  EXPECT_EQ(top_k_indices({0.1f, 0.5f, 0.5f, 0.9f, 0.5f}, 3), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(top_k_indices({1, 1, 1, 1}, 2), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(top_k_indices({3, 1, 2}, 5), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_TRUE(top_k_indices({3, 1, 2}, 0).empty());
}

// One layer, 2 query heads on 1 KV head, head_dim 64, 256 prompt tokens of small random keys
// plus "needle" keys aligned with the decode query: the policy must attend the needles.
struct HandMade {
  ModelConfig c;
  std::unique_ptr<Backend> backend = make_cpu_backend(1);
  std::vector<int32_t> needles = {40, 41, 100, 177};
  std::vector<float> query;
  static constexpr int T = 256, D = 64;

  HandMade() {
    c.num_layers = 1;
    c.num_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = D;
    c.hidden_size = 128;
    c.rope_theta = 10000.0f;
    std::mt19937 rng(3);
    std::normal_distribution<float> n01;
    query.resize(D);
    for (float& x : query) x = n01(rng);
  }

  Tensor make(const std::vector<float>& host, DeviceArray& keep, int64_t cols) {
    keep = backend->upload(HostTensor::owned_f32({int64_t(host.size()) / cols, cols}, host));
    return keep.tensor();
  }

  // Returns the prompt positions the KV head attended at the decode step.
  std::vector<int64_t> attended(const std::string& spec) {
    auto kv = make_kv_policy(*backend, c, KvSpec::parse(spec), T + 1);
    auto* diag = dynamic_cast<KvDiagnosable*>(kv.get());
    diag->enable_diagnostics();
    std::mt19937 rng(5);
    std::normal_distribution<float> n01;
    const RopeParams rope = make_rope_params(c);
    std::vector<float> k(T * D), v(T * D), q(T * 2 * D);
    for (float& x : k) x = 0.1f * n01(rng);
    for (float& x : v) x = n01(rng);
    for (float& x : q) x = 0.1f * n01(rng);
    for (int p : needles)
      for (int d = 0; d < D; ++d) k[p * D + d] = 3.0f * query[d];
    DeviceArray a, b, e, f, g;
    Tensor kt = make(k, a, D), vt = make(v, b, D), qt = make(q, e, 2 * D);
    // Pre-RoPE keys = post-RoPE keys rotated back (positions -t).
    DeviceArray kp_arr = backend->upload(HostTensor::owned_f32({T, D}, k));
    std::vector<int32_t> neg(T), pos(T);
    for (int t = 0; t < T; ++t) neg[t] = -t, pos[t] = t;
    backend->rope(kp_arr.tensor(), neg, D, rope);
    DeviceArray out = backend->alloc(T, 2 * D);
    kv->attend(0, 0, qt, kp_arr.tensor(), kt, vt, out.tensor());
    kv->finish_prefill();
    // Decode: both query heads = the needle direction; the new token's key is unrelated.
    std::vector<float> q1(2 * D), k1(D, 0.0f), v1(D, 0.0f);
    for (int d = 0; d < D; ++d) q1[d] = q1[D + d] = query[d];
    DeviceArray q1a, k1a, v1a;
    Tensor q1t = make(q1, q1a, 2 * D), k1t = make(k1, k1a, D), v1t = make(v1, v1a, D);
    DeviceArray out1 = backend->alloc(1, 2 * D);
    kv->attend(0, T, q1t, k1t, k1t, v1t, out1.tensor());
    const auto& dg = diag->diagnostics();
    EXPECT_EQ(dg.size(), 1u);
    EXPECT_GT(dg[0].mass_covered, 0.99) << spec;
    std::vector<int64_t> prompt_pos;
    for (int64_t p : dg[0].attended_positions)
      if (p < T) prompt_pos.push_back(p);
    return prompt_pos;
  }
};

std::vector<int64_t> chunks_of(const std::vector<int32_t>& tokens, int chunk) {
  std::vector<int64_t> out;
  for (int t : tokens) {
    const int64_t first = t / chunk * chunk;
    for (int64_t i = first; i < first + chunk; ++i)
      if (out.empty() || out.back() < i) out.push_back(i);
  }
  return out;
}

TEST(Selection, PoliciesPickTheNeedles) {
  HandMade h;
  const std::vector<int64_t> exact(h.needles.begin(), h.needles.end());
  EXPECT_EQ(h.attended("yakv:budget=4,local=0,landmarks=bf16,kv-store=f32"), exact);
  EXPECT_EQ(h.attended("yakv:budget=4,local=0"), exact);  // 2-bit landmarks still find them
  EXPECT_EQ(h.attended("yakv:budget=4,local=0,landmarks=residual:m=4,meta=higgs:d=4,n=256,"
                       "res=higgs:d=8,n=256"),
            exact);
  EXPECT_EQ(h.attended("yakv:budget=4,local=0,group-agg=mean"), exact);
  // Chunks of 8: the chunks holding the needles (40 and 41 share one).
  EXPECT_EQ(h.attended("shadowkv:budget=24,local=0,outliers=0,rank=64,kv-store=f32"),
            chunks_of(h.needles, 8));
  EXPECT_EQ(h.attended("quest:budget=48,local=0,page=16"), chunks_of(h.needles, 16));
  // Sinks and local windows are attended on top of the selection.
  std::vector<int64_t> with = {0, 1, 2, 3, 40, 41, 100, 177};
  for (int64_t t = 256 - 16; t < 256; ++t) with.push_back(t);
  EXPECT_EQ(h.attended("yakv:budget=4,local=16,sinks=4"), with);
}

}  // namespace
}  // namespace kvo
