// `kvoffload generate` end to end on the default model (skipped when it is not downloaded).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/run_command.h"

namespace kvo {
namespace {

using testing::run_kvoffload;

class GenerateCli : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = testing::default_model_path();
    if (!std::filesystem::exists(model_)) GTEST_SKIP() << "default model not downloaded";
  }
  std::string model_;
};

TEST_F(GenerateCli, GreedyChatIsDeterministicAndReportsTimings) {
  const std::string args = "generate --model " + model_ +
                           " --chat --prompt 'What is 2+2?' --max-new-tokens 12 --threads 2";
  auto a = run_kvoffload(args + " --json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto j = nlohmann::json::parse(a.out);
  EXPECT_GT(j["prompt_tokens"].get<int>(), 10);
  EXPECT_LE(j["generated_tokens"].get<int>(), 12);
  EXPECT_GT(j["prefill_tokens_per_second"].get<double>(), 0.0);
  EXPECT_FALSE(j["text"].get<std::string>().empty());
  EXPECT_DOUBLE_EQ(j["kv_gpu_fraction_of_dense"].get<double>(), 1.0);  // dense
  EXPECT_EQ(j["kv_pcie_bytes_per_step"].get<int64_t>(), 0);
  auto b = run_kvoffload(args + " --json");
  EXPECT_EQ(nlohmann::json::parse(b.out)["text"], j["text"]);
  // The human form streams the same text, then the timings and the KV cache's bytes.
  auto c = run_kvoffload(args);
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out.rfind(j["text"].get<std::string>(), 0), 0u);
  EXPECT_NE(c.out.find("prefill:"), std::string::npos);
  EXPECT_NE(c.out.find("decode:"), std::string::npos);
  EXPECT_NE(c.out.find("1.000 of dense) | CPU 0 B | PCIe 0 B a decode step]"), std::string::npos)
      << c.out;
}

TEST_F(GenerateCli, StopStringCutsTheOutput) {
  const std::string base =
      "generate --model " + model_ +
      " --prompt 'The quick brown fox' --max-new-tokens 24 --json --ignore-eos";
  auto full = nlohmann::json::parse(run_kvoffload(base).out)["text"].get<std::string>();
  ASSERT_GE(full.size(), 12u);
  const std::string stop = full.substr(full.size() / 2, 3);
  const std::string expected = full.substr(0, full.find(stop));
  auto cut = run_kvoffload(base + " --stop '" + stop + "'");
  ASSERT_EQ(cut.exit_code, 0) << cut.err;
  auto j = nlohmann::json::parse(cut.out);
  EXPECT_EQ(j["text"].get<std::string>(), expected);
  EXPECT_EQ(j["stop_reason"], "stop_string");
}

TEST_F(GenerateCli, PromptLongerThanTheContextIsAClearError) {
  const auto path = std::filesystem::temp_directory_path() / "kvo_long_prompt.txt";
  {
    std::ofstream out(path);
    for (int i = 0; i < 9000; ++i) out << "word ";
  }
  auto r = run_kvoffload("generate --model " + model_ + " --prompt-file " + path.string());
  std::filesystem::remove(path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("error: the prompt has", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("context"), std::string::npos);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
}

TEST_F(GenerateCli, ContextFlagShortensOrExtendsTheModelContext) {
  // Shorter than the prompt: the usual clear error, naming the new context.
  auto short_ctx = run_kvoffload("generate --model " + model_ + " --prompt 'one two three four' " +
                                 "--context 3 --max-new-tokens 2");
  EXPECT_EQ(short_ctx.exit_code, 1);
  EXPECT_NE(short_ctx.err.find("3 tokens"), std::string::npos) << short_ctx.err;
  // Longer than trained (8192 for SmolLM2): a warning, then it runs.
  auto long_ctx = run_kvoffload("generate --model " + model_ +
                                " --prompt hi --context 9000 --max-new-tokens 2 --json");
  ASSERT_EQ(long_ctx.exit_code, 0) << long_ctx.err;
  EXPECT_NE(long_ctx.err.find("warning: --context 9000 is longer than the 8192"), std::string::npos)
      << long_ctx.err;
}

TEST(GenerateCliErrors, BadInputEndsInOneErrorLine) {
  for (const char* args :
       {"generate --model /nonexistent.gguf --prompt hi", "generate --bogus-flag",
        "generate --model x", "no-such-command", "generate --model x --prompt hi --top-p 2",
        "generate --model x --prompt hi --context -5"}) {
    auto r = run_kvoffload(args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << ": " << r.err;
  }
}

}  // namespace
}  // namespace kvo
