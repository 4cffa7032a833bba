// `kvoffload info --kv` accounting and `kvoffload diagnose` from the command line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/run_command.h"

namespace kvo {
namespace {

using testing::run_kvoffload;

TEST(KvCli, InfoRandomWeightsAccounting) {
  const std::string cfg = std::string(KVO_SOURCE_DIR) + "/bench/configs/llama-3.1-8b.json";
  auto r = run_kvoffload("info --random-weights " + cfg + " --kv yakv --context 131072 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["kv_method"], "yakv");
  EXPECT_EQ(j["context_tokens"], 131072);
  EXPECT_EQ(j["dense_gpu_kv_bytes"].get<int64_t>(), int64_t(16) << 30);
  const int64_t mid = 131072 - 64;
  // landmarks, exact local K/V, gather buffers, the K/V records' fp32 scales, the fetch cache
  // (two sets of a step's 4096 x 8 K and V records of 68 bytes and their list)
  const int64_t gpu = 8 * mid * 36 * 32 + 64 * 4096 * 32 + 2 * 4096 * 4096 + 2 * mid * 8 * 4 * 32 +
                      2 * 4096 * 8 * (2 * 68 + 4) * 32;
  EXPECT_EQ(j["gpu_kv_bytes"].get<int64_t>(), gpu);
  EXPECT_NEAR(j["gpu_kv_fraction_of_dense"].get<double>(), double(gpu) / double(int64_t(16) << 30),
              1e-12);
  EXPECT_NEAR(j["gpu_bytes_per_prompt_token"].get<double>(), double(gpu) / 131072, 1e-9);
  // Per-head records: 64 code bytes per (token, head) in host memory, for keys and values.
  EXPECT_NEAR(j["cpu_bytes_per_token"].get<double>(), double(2 * mid * 8 * 64 * 32) / 131072, 1e-9);
  EXPECT_EQ(j["pcie_bytes_per_step"].get<int64_t>(), int64_t(4096) * 8 * 64 * 2 * 32);
  EXPECT_EQ(j["parameters"].get<int64_t>(), 8030261248);

  auto text = run_kvoffload("info --random-weights " + cfg + " --kv shadowkv --rank 96");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("GPU KV / dense"), std::string::npos);
  EXPECT_NE(text.out.find("rank=96"), std::string::npos);

  auto bad = run_kvoffload("info --random-weights " + cfg + " --kv yakv --budget 0");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--budget must be > 0"), std::string::npos) << bad.err;
  auto bad2 = run_kvoffload("info --random-weights " + cfg + " --kv shadowkv --rank 2000");
  EXPECT_EQ(bad2.exit_code, 1);
  EXPECT_NE(bad2.err.find("--rank 2000 is larger"), std::string::npos) << bad2.err;
  auto bad3 = run_kvoffload("info --random-weights " + cfg + " --budget 0.1");
  EXPECT_EQ(bad3.exit_code, 1);
  EXPECT_NE(bad3.err.find("need --kv"), std::string::npos) << bad3.err;
}

TEST(KvCli, DiagnoseReportsEveryLayerAndHead) {  // and the prompt tokens new at each step
  const std::string model = testing::default_model_path();
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "default model not downloaded";
  const auto prompt = std::filesystem::temp_directory_path() / "kvo_diagnose_prompt.txt";
  {
    std::ofstream out(prompt);
    for (int i = 0; i < 30; ++i)
      out << "The key " << i << " opens door number " << (i * 7) % 31 << ". ";
    out << "Which door does key 12 open?";
  }
  auto r = run_kvoffload("diagnose -m " + model + " --kv yakv --budget 0.1 --prompt-file " +
                         prompt.string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["heads"].size(), size_t(30 * 3));  // SmolLM2-135M: 30 layers, 3 KV heads
  for (const auto& h : j["heads"]) {
    EXPECT_GE(h["mass_covered"].get<double>(), 0.0);
    EXPECT_LE(h["mass_covered"].get<double>(), 1.0 + 1e-9);
  }
  auto full = run_kvoffload("diagnose -m " + model +
                            " --kv yakv --budget 1 --kv-store f32 --landmarks f32 --prompt-file " +
                            prompt.string() + " --json");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto jf = nlohmann::json::parse(full.out);
  EXPECT_NEAR(jf["mean_mass_covered"].get<double>(), 1.0, 1e-9);
  EXPECT_LT(jf["max_output_rel_error"].get<double>(), 1e-4);
  // Three steps: a budget of every token attends every prompt token at every step (none new); a
  // small one attends some anew, never more than it attends.
  auto all3 = run_kvoffload("diagnose -m " + model +
                            " --kv yakv --budget 1 --kv-store f32 --landmarks f32 --steps 3 "
                            "--prompt-file " +
                            prompt.string() + " --json");
  ASSERT_EQ(all3.exit_code, 0) << all3.err;
  auto ja = nlohmann::json::parse(all3.out);
  EXPECT_EQ(ja["mean_new_prompt_tokens"].get<double>(), 0.0);
  EXPECT_EQ(ja["mean_attended_prompt_tokens"].get<double>(), ja["prompt_tokens"].get<double>());
  auto some3 = run_kvoffload("diagnose -m " + model + " --kv yakv --budget 0.1 --steps 3 " +
                             "--prompt-file " + prompt.string() + " --json");
  ASSERT_EQ(some3.exit_code, 0) << some3.err;
  auto js = nlohmann::json::parse(some3.out);
  EXPECT_GE(js["mean_new_prompt_tokens"].get<double>(), 0.0);
  EXPECT_LT(js["mean_new_prompt_tokens"].get<double>(),
            js["mean_attended_prompt_tokens"].get<double>());
  for (const auto& h : js["heads"]) EXPECT_GE(h["new_prompt_tokens"].get<int64_t>(), 0);
  EXPECT_FALSE(j.contains("mean_new_prompt_tokens"));  // one step: nothing to compare
  auto zero = run_kvoffload("diagnose -m " + model + " --kv yakv --steps 0 --prompt-file " +
                            prompt.string());
  EXPECT_EQ(zero.exit_code, 1);
  auto dense =
      run_kvoffload("diagnose -m " + model + " --kv dense --prompt-file " + prompt.string());
  EXPECT_EQ(dense.exit_code, 1);
  std::filesystem::remove(prompt);
}

}  // namespace
}  // namespace kvo
