// `kvoffload info` end to end: runs the built binary, parses its JSON, and checks that bad paths
// end in exactly one "error:" line and a non-zero exit status.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io_builders.h"

namespace kvo {
namespace {

namespace fs = std::filesystem;

struct RunResult {
  int status = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult run_binary(const std::string& args) {
  test::TempDir tmp("cli");
  fs::path out = tmp.path() / "out", err = tmp.path() / "err";
  std::string cmd = std::string("'") + KVO_BINARY + "' " + args + " >'" + out.string() + "' 2>'" +
                    err.string() + "'";
  int raw = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

const std::string kDefaultModel =
    std::string(KVO_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

TEST(InfoCli, DefaultModelJson) {
  if (!fs::exists(kDefaultModel)) GTEST_SKIP() << "run scripts/setup to fetch " << kDefaultModel;
  RunResult r = run_binary("info '" + kDefaultModel + "' --json");
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["layers"], 30);
  EXPECT_EQ(j["hidden_size"], 576);
  EXPECT_EQ(j["num_heads"], 9);
  EXPECT_EQ(j["num_kv_heads"], 3);
  EXPECT_EQ(j["head_dim"], 64);
  EXPECT_EQ(j["vocab_size"], 49152);
  EXPECT_EQ(j["context_length"], 8192);
  EXPECT_EQ(j["tied_embeddings"], true);
  EXPECT_EQ(j["rope"]["layout"], "adjacent-pairs");
  EXPECT_EQ(j["kv_bytes_per_token_bf16"], 2 * 30 * 3 * 64 * 2);
  // SmolLM2-135M: about 135M parameters (tied embeddings counted once).
  EXPECT_GT(j["parameters"].get<int64_t>(), 130'000'000);
  EXPECT_LT(j["parameters"].get<int64_t>(), 140'000'000);
  EXPECT_TRUE(j["dtypes"].contains("Q4_1")) << j["dtypes"].dump();
}

TEST(InfoCli, DefaultModelText) {
  if (!fs::exists(kDefaultModel)) GTEST_SKIP() << "run scripts/setup to fetch " << kDefaultModel;
  RunResult r = run_binary("info '" + kDefaultModel + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("architecture:      llama"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("KV cache (bf16):   23040 bytes per token"), std::string::npos) << r.out;
}

void expect_one_error_line(const RunResult& r, const std::string& phrase) {
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("error:", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(phrase), std::string::npos) << r.err;
}

TEST(InfoCli, NonexistentPath) {
  expect_one_error_line(run_binary("info /nonexistent"), "/nonexistent");
}

TEST(InfoCli, BadFiles) {
  test::TempDir dir("info-bad");
  fs::path text = dir.path() / "notes.txt";
  test::write_file(text, std::string("hello"));
  expect_one_error_line(run_binary("info '" + text.string() + "'"), "not a GGUF file");

  fs::path trunc = dir.path() / "t.gguf";
  test::Bytes g = test::GgufBuilder()
                      .kv_str("general.architecture", "llama")
                      .tensor_f32("output_norm.weight", {4}, {1, 2, 3, 4})
                      .build();
  test::write_file(trunc, test::Bytes(g.begin(), g.end() - 3));
  expect_one_error_line(run_binary("info '" + trunc.string() + "'"), "truncated GGUF file");

  test::write_file(dir.path() / "config.json",
                   std::string(R"({"architectures": ["GPT2LMHeadModel"]})"));
  expect_one_error_line(run_binary("info '" + dir.path().string() + "'"),
                        "unsupported architecture GPT2LMHeadModel");
}

}  // namespace
}  // namespace kvo
