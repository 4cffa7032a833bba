// KV specs mutated from valid ones (fuzz.h): each parses and resolves or raises kvo::Error, and
// a resolved spec's canonical text resolves to itself and selects at least one token.
#include <gtest/gtest.h>

#include "fuzz.h"
#include "kv/kv_spec.h"

namespace kvo {
namespace {

void exercise_kv_spec(const std::string& text) {
  const KvSpec r = KvSpec::parse(text).resolved();
  const std::string canonical = r.to_string();
  ASSERT_EQ(KvSpec::parse(canonical).resolved().to_string(), canonical) << "from '" << text << "'";
  if (r.sparse()) {
    const int64_t prompt = 131072, tokens = r.budget_tokens(prompt);
    ASSERT_GE(tokens, 1) << canonical;
    ASSERT_LE(tokens, r.budget <= 1 ? prompt : int64_t(r.budget)) << canonical;
  }
}

TEST(KvSpecFuzz, MutationsParseOrRaiseError) {
  const std::vector<std::string> seeds = {
      "dense", "quest:page=16,budget=0.05",
      "shadowkv:rank=160,chunk=8,outliers=48,local=32,budget=0.015625",
      "yakv:budget=2048,sinks=4,group-agg=mean,landmarks=higgs:d=4,n=256,kv-store=fp8",
      "yakv:landmarks=(residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256),fetch-cache=off"};
  // clang-format off
  const std::vector<std::string> tokens = {
      "dense", "shadowkv", "yakv", "quest", ":", "=", ",", "(", ")", " ", "",
      "budget", "sinks", "group-agg", "max", "mean", "local", "chunk", "page", "outliers", "rank",
      "landmarks", "kv-store", "fetch-cache", "on", "off", "bf16", "fp8", "higgs:d=2,n=256",
      "0", "1", "0.5", "1.5", "4096", "-1", "1e300", "nan", "inf", "9223372036854775808", "0x10"};
  // clang-format on
  int accepted = 0, rejected = 0;
  test::fuzz_texts(seeds, tokens, test::fuzz_seed_or(57), exercise_kv_spec, &accepted, &rejected);
  EXPECT_EQ(accepted + rejected, test::fuzz_iterations());
  EXPECT_GT(accepted, test::fuzz_iterations() / 50);
  EXPECT_GT(rejected, test::fuzz_iterations() / 4);
}

}  // namespace
}  // namespace kvo
