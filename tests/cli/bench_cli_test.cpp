// `kvoffload bench` without a checkpoint: --random-weights CONFIG with random prompt ids, a batch
// of sequences, the JSON figures, and the one-line errors for an impossible batch and a missing
// model.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/run_command.h"
#include "model/tiny_random_model.h"

namespace kvo {
namespace {

using testing::run_kvoffload;

std::string write_tiny_config() {
  const auto path = std::filesystem::temp_directory_path() /
                    ("kvo_tiny_config_" + std::to_string(::getpid()) + ".json");
  std::ofstream(path) << testing::tiny_config_json("Qwen3ForCausalLM");
  return path.string();
}

TEST(BenchCli, RandomWeightsBatchReportsAggregateAndPerSequenceSpeed) {
  const std::string cfg = write_tiny_config();
  auto r = run_kvoffload("bench --random-weights " + cfg +
                         " --device cpu --prompt-tokens 16,40 --gen 5 --batch 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 2u);
  for (const auto& row : j["results"]) {
    EXPECT_EQ(row["batch"], 3);
    EXPECT_GT(row["decode_tokens_per_second"].get<double>(), 0.0);
    EXPECT_NEAR(row["decode_tokens_per_second"].get<double>(),
                3 * row["decode_tokens_per_second_per_sequence"].get<double>(),
                1e-6 * row["decode_tokens_per_second"].get<double>());
    EXPECT_GT(row["prefill_tokens_per_second"].get<double>(), 0.0);
  }
  EXPECT_EQ(j["results"][1]["prompt_tokens"], 40);
  std::filesystem::remove(cfg);
}

TEST(BenchCli, ImpossibleBatchNamesTheLargestThatFits) {
  const std::string cfg = write_tiny_config();
  auto r = run_kvoffload("bench --random-weights " + cfg +
                         " --device cpu --prompt-tokens 900 --gen 4 --batch 2000000000");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("the largest batch that fits is"), std::string::npos) << r.err;
  std::filesystem::remove(cfg);
}

TEST(BenchCli, NeedsAModelOrRandomWeights) {
  auto r = run_kvoffload("bench --device cpu");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--model or --random-weights"), std::string::npos) << r.err;
  auto both = run_kvoffload("bench -m x.gguf --random-weights y.json --device cpu");
  EXPECT_NE(both.exit_code, 0);
}

}  // namespace
}  // namespace kvo
