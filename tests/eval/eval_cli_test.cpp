// The text2json/tasks subcommands end to end, and the shipped sets against the generator.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "eval/jsonl.h"
#include "eval/text2json_generate.h"
#include "eval/token_counter.h"
#include "eval_test_support.h"

namespace kvo {
namespace {

struct CliRun {
  int status = -1;
  std::string output;  // stdout and stderr
};

CliRun run_cli(const std::string& args) {
  CliRun r;
  FILE* pipe = popen((std::string("'") + KVO_BINARY + "' " + args + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) r.output.append(buf, n);
  r.status = pclose(pipe);
  return r;
}

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

const char* kGold =
    "{\"problem\": \"p\", \"answer\": \"[{\\\"name\\\": \\\"A\\\", \\\"x\\\": \\\"1\\\", "
    "\\\"y\\\": \\\"2\\\"}]\"}\n"
    "{\"problem\": \"p\", \"answer\": \"[{\\\"name\\\": \\\"B\\\", \\\"x\\\": \\\"1\\\", "
    "\\\"y\\\": \\\"2\\\"}, {\\\"name\\\": \\\"B\\\", \\\"x\\\": \\\"3\\\", \\\"y\\\": "
    "\\\"4\\\"}]\"}\n"
    "{\"problem\": \"p\", \"answer\": \"[{\\\"name\\\": \\\"C\\\", \\\"x\\\": \\\"1\\\", "
    "\\\"y\\\": \\\"2\\\"}]\"}\n";

TEST(EvalCli, Text2JsonScorePrintsTheFinalScore) {
  const std::string gold = write_file("cli_gold.jsonl", kGold);
  const std::string pred = write_file(
      "cli_pred.jsonl",
      "{\"prediction\": \"[{\\\"name\\\": \\\"A\\\", \\\"x\\\": \\\"1\\\", \\\"y\\\": 2}]\"}\n"
      "{\"prediction\": \"whatever\"}\n"
      "{\"prediction\": \"[{\\\"name\\\": \\\"C\\\", \\\"x\\\": \\\"1\\\"}]\"}\n");
  CliRun r = run_cli("text2json score --data " + gold + " --predictions " + pred + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_DOUBLE_EQ(j["score"].get<double>(), 75.0);  // (1 + 0.5) / 2, sample 2 excluded
  EXPECT_EQ(j["samples"], 3);
  EXPECT_EQ(j["excluded"], 1);
  r = run_cli("text2json score --data " + gold + " --predictions " + pred);
  EXPECT_NE(r.output.find("75.00"), std::string::npos) << r.output;
}

TEST(EvalCli, Text2JsonScoreErrorsNameFileAndLine) {
  const std::string gold = write_file("cli_gold2.jsonl", kGold);
  const std::string short_pred = write_file("cli_short.jsonl", "{\"prediction\": \"[]\"}\n");
  CliRun r = run_cli("text2json score --data " + gold + " --predictions " + short_pred);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("3 samples"), std::string::npos) << r.output;
  const std::string bad = write_file("cli_bad.jsonl",
                                     "{\"prediction\": \"[]\"}\n{\"prediction\": [}\n"
                                     "{\"prediction\": \"[]\"}\n");
  r = run_cli("text2json score --data " + gold + " --predictions " + bad);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find(bad + ":2"), std::string::npos) << r.output;
  const std::string bad_gold =
      write_file("cli_badgold.jsonl", "{\"problem\": \"p\", \"answer\": \"[oops\"}\n");
  r = run_cli("text2json score --data " + bad_gold + " --predictions " + short_pred);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find(bad_gold + ":1"), std::string::npos) << r.output;
}

TEST(EvalCli, GenerateWritesTheSameFileTwice) {
  const std::string tok = std::string(KVO_SHARED_DIR) + "/data/tokenizers/llama3.1/tokenizer.json";
  const std::string a = ::testing::TempDir() + "/cli_gen_a.jsonl";
  const std::string b = ::testing::TempDir() + "/cli_gen_b.jsonl";
  for (const std::string& out : {a, b}) {
    CliRun r = run_cli(
        "text2json generate --domain movies,products --records 5-7 --tokens 2K "
        "--seed 3 --samples 2 --tokenizer " +
        tok + " --out " + out);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  std::stringstream sa, sb;
  sa << std::ifstream(a).rdbuf();
  sb << std::ifstream(b).rdbuf();
  EXPECT_EQ(sa.str(), sb.str());
  EXPECT_EQ(read_jsonl(a).size(), 2u);
  const std::string t = ::testing::TempDir() + "/cli_task.jsonl";
  CliRun r = run_cli("tasks generate --task json_kv --tokens 2K --n 2 --seed 1 --tokenizer " + tok +
                     " --out " + t);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_jsonl(t).size(), 2u);
  r = run_cli("text2json generate --domain sports --tokens 2K --tokenizer " + tok + " --out " + t);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("unknown Text2JSON domain"), std::string::npos) << r.output;
}

// The shipped sets must be exactly what scripts/make-datasets produces from this code; a
// change to the generator without regenerating them fails here.
TEST(EvalShippedSets, MatchTheGenerator) {
  const std::string root = std::string(KVO_TEST_DATA_DIR) + "/..";
  const std::string gguf = root + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(gguf)) GTEST_SKIP() << "default model not fetched (scripts/setup)";
  const TokenCounter count = load_token_counter(gguf);
  const std::map<int, std::pair<int, int>> records = {
      {2, {4, 6}}, {4, {6, 10}}, {8, {10, 14}}, {16, {14, 20}}, {32, {20, 28}}};
  for (const auto& [k, range] : records) {
    const std::string file = fmt::format("{}/data/text2json/text2json-{}k.jsonl", root, k);
    std::vector<std::string> lines;  // raw bytes: the comparison is byte for byte
    std::ifstream in(file, std::ios::binary);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    ASSERT_EQ(lines.size(), 50u) << file;
    Text2JsonOptions o;
    o.domains = {"products", "medical", "organizations", "movies"};
    o.records_min = range.first;
    o.records_max = range.second;
    o.target_tokens = k * 1024;
    o.seed = uint64_t(k);
    o.haystack_dir = testing::test_haystack_dir();
    for (size_t i : {size_t(0), size_t(49)}) {
      EXPECT_EQ(generate_text2json_sample(o, i, count).dump(), lines[i])
          << file << " sample " << i << ": run scripts/make-datasets";
    }
  }
}

}  // namespace
}  // namespace kvo
