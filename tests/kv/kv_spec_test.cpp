// KvSpec: parsing of method strings and knob flags, defaults, and errors for bad knobs.
#include "kv/kv_spec.h"

#include <gtest/gtest.h>

#include "backend/cpu/cpu_backend.h"
#include "kv/kv_policy.h"
#include "util/error.h"

namespace kvo {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(KvSpec, DefaultsPerMethod) {
  KvSpec s = KvSpec::parse("shadowkv").resolved();
  EXPECT_DOUBLE_EQ(s.budget, 0.015625);
  EXPECT_EQ(s.rank, 160);
  EXPECT_EQ(s.chunk, 8);
  EXPECT_EQ(s.outliers, 48);
  EXPECT_EQ(s.local, 32);
  EXPECT_EQ(s.sinks, 0);
  EXPECT_EQ(s.agg(), GroupAgg::Max);
  KvSpec y = KvSpec::parse("yakv").resolved();
  EXPECT_DOUBLE_EQ(y.budget, 0.03125);
  EXPECT_EQ(y.chunk, 1);
  EXPECT_EQ(y.outliers, 0);
  EXPECT_EQ(y.local, 64);
  EXPECT_EQ(y.landmarks, "higgs:d=4,n=256");
  EXPECT_EQ(y.kv_store, "higgs:d=2,n=256");
  EXPECT_TRUE(y.caches_fetches());
  EXPECT_TRUE(s.caches_fetches());
  // The fetch cache changes no output: the canonical text names it only when off.
  EXPECT_EQ(y.to_string().find("fetch-cache"), std::string::npos);
  const KvSpec y_off = KvSpec::parse("yakv:fetch-cache=off").resolved();
  EXPECT_FALSE(y_off.caches_fetches());
  EXPECT_EQ(y_off.to_string(), y.to_string() + ",fetch-cache=off");
  EXPECT_EQ(KvSpec::parse(y_off.to_string()).resolved().to_string(), y_off.to_string());
  KvSpec q = KvSpec::parse("quest").resolved();
  EXPECT_EQ(q.to_string().find("fetch-cache"), std::string::npos);  // nothing offloaded
  EXPECT_EQ(q.page, 16);
  EXPECT_DOUBLE_EQ(q.budget, 0.0625);
  // resolved() is idempotent (make_kv_policy resolves again).
  EXPECT_EQ(q.resolved().to_string(), q.to_string());
  EXPECT_EQ(y.resolved().to_string(), y.to_string());
}

TEST(KvSpec, ParsesKnobsAndNestedQuantizerSpecs) {
  KvSpec s = KvSpec::parse(
      "yakv:budget=0.03,chunk=2,landmarks=residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256,"
      "kv-store=higgs:d=2,n=256,group-agg=mean,sinks=4");
  EXPECT_DOUBLE_EQ(s.budget, 0.03);
  EXPECT_EQ(s.chunk, 2);
  EXPECT_EQ(s.landmarks, "residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256");
  EXPECT_EQ(s.kv_store, "higgs:d=2,n=256");
  EXPECT_EQ(s.agg(), GroupAgg::Mean);
  EXPECT_EQ(s.sinks, 4);
  KvSpec p = KvSpec::parse("yakv:landmarks=(higgs:d=4,n=256),budget=512");
  EXPECT_EQ(p.landmarks, "higgs:d=4,n=256");
  EXPECT_EQ(p.budget_tokens(100000), 512);
  EXPECT_EQ(p.resolved().budget_tokens(1000), 512);
  KvSpec h = KvSpec::from_knobs("shadowkv", {{"--rank", "96"}, {"budget", "0.5"}});
  EXPECT_EQ(h.rank, 96);
  EXPECT_EQ(h.budget_tokens(1001), 501);
  EXPECT_EQ(KvSpec::parse("dense").resolved().to_string(), "dense");
}

TEST(KvSpec, BadKnobsAreClearErrors) {
  EXPECT_NE(error_of([] { KvSpec::parse("sparse"); }).find("unknown --kv method 'sparse'"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:budget=0"); }).find("--budget must be > 0"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:budget=-1"); }).find("--budget"), std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:budget=abc"); }).find("--budget"), std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:budget=100.5"); }).find("whole number"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:budget=1e300"); }).find("up to 2^53"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:chunk=0"); }).find("--chunk must be in 1..4096"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:sinks=-3"); }).find("--sinks must be >= 0"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:group-agg=min"); }).find("max or mean"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { KvSpec::parse("yakv:rank=8"); }).find("--rank does not apply to --kv yakv"),
      std::string::npos);
  EXPECT_NE(
      error_of([] { KvSpec::parse("dense:budget=0.1"); }).find("does not apply to --kv dense"),
      std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("quest:chunk=4"); }).find("--chunk does not apply"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:landmarks=higgs:d=3,n=7"); }).find("--landmarks"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:kv-store=int4"); }).find("--kv-store"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              KvSpec::parse("yakv:kv-store=residual:m=4,meta=bf16,res=fp8");
            }).find("residual"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:bogus=1"); }).find("unknown KV knob 'bogus'"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("shadowkv:rank=0"); }).find("--rank must be >= 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("yakv:fetch-cache=yes"); }).find("on or off"),
            std::string::npos);
  EXPECT_NE(error_of([] { KvSpec::parse("quest:fetch-cache=on"); }).find("does not apply"),
            std::string::npos);
}

TEST(KvSpec, RankAboveKeyWidthIsAnError) {
  ModelConfig c;
  c.num_layers = 1;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.hidden_size = 64;
  auto backend = make_cpu_backend(1);
  const std::string msg =
      error_of([&] { make_kv_policy(*backend, c, KvSpec::parse("shadowkv:rank=33"), 64); });
  EXPECT_NE(msg.find("--rank 33 is larger than kv_heads * head_dim = 32"), std::string::npos)
      << msg;
}

}  // namespace
}  // namespace kvo
