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
    EXPECT_GT(row["first_decode_step_ms"].get<double>(), 0.0);  // timed apart from the steps
  }
  EXPECT_EQ(j["results"][1]["prompt_tokens"], 40);
  std::filesystem::remove(cfg);
}

TEST(BenchCli, SharedPromptBatchReportsWhereTheKvLivesAndWhatCrossesPcie) {
  const std::string cfg = write_tiny_config();
  const std::string args = "bench --random-weights " + cfg +
                           " --device cpu --kv yakv --budget 8 --prompt-tokens 200 --gen 4 "
                           "--batch 3 --shared-prompt";
  auto r = run_kvoffload(args + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto row = nlohmann::json::parse(r.out)["results"][0];
  EXPECT_EQ(row["batch"], 3);
  EXPECT_TRUE(row["shared_prompt"].get<bool>());
  EXPECT_GE(row["largest_batch"].get<int64_t>(), 3);
  EXPECT_EQ(row["batch_limited_by"], "device");  // the tiny model's offloaded stores are small
  EXPECT_GT(row["kv_gpu_bytes_per_sequence"].get<int64_t>(), 0);
  EXPECT_GT(row["kv_cpu_bytes_per_sequence"].get<int64_t>(), 0);
  EXPECT_GT(row["pcie_bytes_per_step_per_sequence"].get<int64_t>(), 0);
  EXPECT_NEAR(row["pcie_gbps"].get<double>(),
              3.0 * row["pcie_bytes_per_step_per_sequence"].get<double>() /
                  row["decode_step_ms"].get<double>() / 1e6,
              1e-6 * row["pcie_gbps"].get<double>());
  auto text = run_kvoffload(args);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("prefilled once"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("PCIe GB/s"), std::string::npos) << text.out;
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
