// `kvoffload tokenize` end to end: plain and --json output, and one clear error line for a
// missing or broken tokenizer.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"

namespace kvo {
namespace {
namespace fs = std::filesystem;

struct CliResult {
  int status;
  std::string output;  // stdout and stderr
};

CliResult run_cli(const std::string& args) {
  const std::string cmd = std::string(KVO_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class TokenizerCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kvo_tokenize_cli_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_level::encode(std::string(1, char(b)))] = b;
    vocab["ab"] = 256;
    const nlohmann::json tok = {
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b"}}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
        {"added_tokens", {{{"id", 257}, {"content", "<|end|>"}, {"special", true}}}}};
    std::ofstream(dir_ / "tokenizer.json") << tok.dump();
    std::ofstream(dir_ / "text.txt") << "ab c<|end|>";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(TokenizerCli, PrintsIdsAndCount) {
  CliResult r = run_cli("tokenize --model " + dir_.string() + " --text 'ab c<|end|>'");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "256 32 99 257\n4 tokens\n");
  CliResult f = run_cli("tokenize --model " + (dir_ / "tokenizer.json").string() + " --file " +
                        (dir_ / "text.txt").string());
  EXPECT_EQ(f.output, r.output);
}

TEST_F(TokenizerCli, Json) {
  CliResult r = run_cli("tokenize --model " + dir_.string() + " --text 'ab c<|end|>' --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j.at("ids"), nlohmann::json({256, 32, 99, 257}));
  EXPECT_EQ(j.at("count"), 4);
  EXPECT_EQ(j.at("tokens"), nlohmann::json({"ab", "\xC4\xA0", "c", "<|end|>"}));
}

TEST_F(TokenizerCli, ErrorsAreOneLine) {
  std::ofstream(dir_ / "broken.json") << "this is not json";
  for (const std::string& model :
       {(dir_ / "broken.json").string(), (dir_ / "missing.gguf").string()}) {
    CliResult r = run_cli("tokenize --model " + model + " --text hi");
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  CliResult none = run_cli("tokenize --model " + dir_.string());
  EXPECT_NE(none.status, 0);
  EXPECT_NE(none.output.find("--text or --file"), std::string::npos) << none.output;
}

}  // namespace
}  // namespace kvo
