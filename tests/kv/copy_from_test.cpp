// KvPolicy::copy_from (kvoffload bench --shared-prompt): a fresh policy that copies another's
// prefilled state holds the same memory and decodes exactly like the original, for every method,
// on the CPU backend and, where a GPU is present, with the CUDA policies.
#include <gtest/gtest.h>

#include "kv/policy_steps.h"
#include "util/error.h"

namespace kvo {
namespace {

using testing::make_steps;
using testing::run;
using testing::small_config;

class CopyFrom : public ::testing::TestWithParam<const char*> {};

TEST_P(CopyFrom, CopiedPolicyDecodesLikeTheOriginal) {
  const ModelConfig c = small_config(64);
  const int64_t T = 300, cap = T + 4;
  const auto steps = make_steps(c, T, 5);  // the prompt, then steps of 1, 2 and 1 tokens
  const std::span<const std::vector<testing::Inputs>> all(steps);
  const KvSpec spec = KvSpec::parse(GetParam()).resolved();
  std::vector<std::unique_ptr<Backend>> backends;
  backends.push_back(make_backend("cpu", 0));
  if (auto gpu = make_backend("auto", 0); gpu->name() == "cuda") backends.push_back(std::move(gpu));
  for (const auto& backend : backends) {
    auto original = make_kv_policy(*backend, c, spec, cap);
    run(*backend, *original, c, all.first(1), nullptr);
    auto copy = make_kv_policy(*backend, c, spec, cap);
    copy->copy_from(*original);
    EXPECT_EQ(copy->length(), T);
    const KvMemoryReport a = original->memory(), b = copy->memory();
    EXPECT_EQ(b.gpu_bytes, a.gpu_bytes) << backend->name();
    EXPECT_EQ(b.cpu_bytes, a.cpu_bytes) << backend->name();
    const auto want = run(*backend, *original, c, all.subspan(1), nullptr);
    const auto got = run(*backend, *copy, c, all.subspan(1), nullptr);
    EXPECT_EQ(got, want) << backend->name() << ": the copy decodes differently";
    EXPECT_EQ(copy->length(), original->length());
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, CopyFrom,
                         ::testing::Values("dense", "yakv",
                                           "yakv:kv-store=higgs:d=2,n=256,group=128",
                                           "shadowkv:rank=96,budget=64", "quest:page=8,budget=64"));

TEST(CopyFromMismatch, OtherSpecIsAnError) {
  const ModelConfig c = small_config(64);
  const int64_t T = 300;
  const auto steps = make_steps(c, T, 6);
  auto cpu = make_backend("cpu", 0);
  auto yakv = make_kv_policy(*cpu, c, KvSpec::parse("yakv"), T + 4);
  run(*cpu, *yakv, c, std::span(steps).first(1), nullptr);
  auto other = make_kv_policy(*cpu, c, KvSpec::parse("yakv:budget=16"), T + 4);
  EXPECT_THROW(other->copy_from(*yakv), Error);
  auto dense = make_kv_policy(*cpu, c, KvSpec::parse("dense"), T + 4);
  EXPECT_THROW(dense->copy_from(*yakv), Error);
}

}  // namespace
}  // namespace kvo
