// `kvoffload eval` and `kvoffload report` end to end: a short CPU eval on the default model
// (skipped when it is not downloaded) writes valid rows, a summary and a report; a rerun
// resumes without new rows; a too-long sample is skipped; bad flags fail with one error line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/run_command.h"

namespace kvo {
namespace {

namespace fs = std::filesystem;
using testing::run_kvoffload;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<nlohmann::json> rows_of(const fs::path& p) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(p, std::ios::binary);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / name;
  fs::remove_all(d);
  return d;
}

// One "error: ..." line on stderr and a failing exit status.
void expect_one_error_line(const testing::CommandResult& r, const std::string& what) {
  EXPECT_NE(r.exit_code, 0) << what;
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << what << ": " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << what << ": " << r.err;
}

class EvalHarnessCli : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = testing::default_model_path();
    if (!fs::exists(model_)) GTEST_SKIP() << "default model not downloaded";
  }
  std::string model_;
};

void expect_valid_row(const nlohmann::json& r) {
  for (const char* key :
       {"cell", "sample_id", "task", "length", "method", "knobs", "output", "score", "excluded",
        "fidelity", "prompt_tokens", "output_tokens", "prefill_seconds", "decode_seconds",
        "kv_gpu_bytes", "kv_cpu_bytes", "kv_pcie_bytes_per_step", "stop_reason"}) {
    EXPECT_TRUE(r.contains(key)) << key << " missing in " << r.dump();
  }
  EXPECT_FALSE(r["skipped"].get<bool>());
  EXPECT_GT(r["prompt_tokens"].get<int>(), 1900);
  EXPECT_LE(r["output_tokens"].get<int>(), 16);
  EXPECT_GE(r["score"].get<double>(), 0.0);
  EXPECT_GT(r["kv_gpu_bytes"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(r["fidelity"].get<double>(), 1.0);  // dense against itself
}

TEST_F(EvalHarnessCli, RunsWritesRowsSummaryAndReportThenResumes) {
  const fs::path dir = fresh_dir("kvo_eval_run");
  const std::string args = "eval --model " + model_ +
                           " --task niah_multikey,text2json --lengths 2K --limit 1 --kv dense "
                           "--max-new-tokens 16 --threads 2 --out " +
                           dir.string();
  auto r = run_kvoffload(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("niah_multikey"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fidelity"), std::string::npos) << r.out;

  const fs::path niah = dir / "niah_multikey.2k.dense.jsonl";
  const fs::path t2j = dir / "text2json.2k.dense.jsonl";
  ASSERT_TRUE(fs::exists(niah));
  ASSERT_TRUE(fs::exists(t2j));
  auto niah_rows = rows_of(niah), t2j_rows = rows_of(t2j);
  ASSERT_EQ(niah_rows.size(), 1u);
  ASSERT_EQ(t2j_rows.size(), 1u);
  expect_valid_row(niah_rows[0]);
  expect_valid_row(t2j_rows[0]);
  EXPECT_EQ(niah_rows[0]["cell"], "niah_multikey/2k/dense");

  auto summary = nlohmann::json::parse(read_file(dir / "summary.json"));
  ASSERT_EQ(summary["cells"].size(), 2u);
  for (const auto& c : summary["cells"]) {
    EXPECT_EQ(c["samples"], 1);
    EXPECT_EQ(c["skipped_too_long"], 0);
    EXPECT_DOUBLE_EQ(c["gpu_kv_fraction_of_dense"].get<double>(), 1.0);
    EXPECT_DOUBLE_EQ(c["fidelity"].get<double>(), 100.0);
    EXPECT_GT(c["gpu_kv_bytes_per_token"].get<double>(), 0.0);
  }

  auto rep = run_kvoffload("report " + dir.string());
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  const std::string html = read_file(dir / "report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("niah_multikey"), std::string::npos);

  // A rerun computes nothing and writes the same summary.
  const std::string summary_text = read_file(dir / "summary.json");
  const std::string niah_text = read_file(niah);
  auto again = run_kvoffload(args);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(read_file(niah), niah_text);
  EXPECT_EQ(rows_of(t2j).size(), 1u);
  EXPECT_EQ(read_file(dir / "summary.json"), summary_text);
  EXPECT_NE(again.err.find("2 already in"), std::string::npos) << again.err;
}

// Short prompts of our own (--data): a too-long sample is skipped, and a run interrupted in the
// middle of a row resumes with that sample alone.
TEST_F(EvalHarnessCli, TooLongSampleIsSkippedAndATornRowIsRedone) {
  const fs::path dir = fresh_dir("kvo_eval_long");
  const fs::path data = fs::path(::testing::TempDir()) / "kvo_eval_long.jsonl";
  {
    std::string huge;
    for (int i = 0; i < 9000; ++i) huge += "word ";
    auto row = [](const std::string& id, const std::string& problem) {
      return nlohmann::json(
                 {{"id", id}, {"task", "niah_multikey"}, {"problem", problem}, {"answers", {"42"}}})
                 .dump() +
             "\n";
    };
    std::ofstream(data, std::ios::binary)
        << row("short", "The magic number is 42. What is the magic number?")
        << row("huge", huge + "What is the magic number?")
        << row("short2", "Remember: the magic number is 42. Say the magic number.");
  }
  const std::string args = "eval --model " + model_ + " --data " + data.string() +
                           " --max-new-tokens 4 --threads 2 --out " + dir.string();
  auto r = run_kvoffload(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("1 too long"), std::string::npos) << r.out;
  const fs::path cell = dir / "kvo_eval_long.all.dense.jsonl";
  auto rows = rows_of(cell);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_FALSE(rows[0]["skipped"].get<bool>());
  EXPECT_TRUE(rows[1]["skipped"].get<bool>());
  EXPECT_NE(rows[1]["skip_reason"].get<std::string>().find("too long"), std::string::npos);
  EXPECT_FALSE(rows[2]["skipped"].get<bool>());
  auto summary = nlohmann::json::parse(read_file(dir / "summary.json"));
  EXPECT_EQ(summary["cells"][0]["samples"], 2);
  EXPECT_EQ(summary["cells"][0]["skipped_too_long"], 1);

  // Interrupted while writing the third row: the torn line goes, that sample alone runs again.
  const std::string text = read_file(cell);
  const size_t second_end = text.find('\n', text.find('\n') + 1) + 1;
  std::ofstream(cell, std::ios::binary | std::ios::trunc)
      << text.substr(0, second_end) << text.substr(second_end, 25);
  auto resumed = run_kvoffload(args);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  auto redone = rows_of(cell);
  ASSERT_EQ(redone.size(), 3u);
  EXPECT_EQ(redone[0].dump(), rows[0].dump());
  EXPECT_EQ(redone[2]["sample_id"], "short2");
  EXPECT_EQ(redone[2]["output"], rows[2]["output"]);  // greedy: the same text
  EXPECT_EQ(nlohmann::json::parse(read_file(dir / "summary.json"))["cells"][0]["samples"], 2);
}

TEST_F(EvalHarnessCli, UnknownMethodFailsBeforeAnyWork) {
  const fs::path dir = fresh_dir("kvo_eval_badkv");
  auto r = run_kvoffload("eval --model " + model_ +
                         " --task json_kv --lengths 2K --limit 1 --kv nonexistent --out " +
                         dir.string());
  expect_one_error_line(r, "--kv nonexistent");
  EXPECT_NE(r.err.find("nonexistent"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "json_kv.2k.dense.jsonl"));
}

TEST(EvalHarnessFlags, BadFlagsGiveOneErrorLine) {
  const std::string base = "eval --model /nonexistent/model.gguf --out " +
                           (fs::path(::testing::TempDir()) / "kvo_eval_bad").string();
  expect_one_error_line(run_kvoffload(base + " --task nosuch"), "unknown task");
  expect_one_error_line(run_kvoffload(base + " --task text2json --lengths 3000"), "bad length");
  expect_one_error_line(run_kvoffload(base + " --task text2json --lengths 1M"), "no such length");
  expect_one_error_line(run_kvoffload(base + " --task text2json --no-such-knob 1"), "bad knob");
  expect_one_error_line(run_kvoffload(base + " --task text2json --kv yakv,yakv"), "repeated");
  expect_one_error_line(run_kvoffload(base), "no task");
  expect_one_error_line(run_kvoffload(base + " --task text2json stray"), "stray word");
  expect_one_error_line(run_kvoffload("eval --task text2json --out /tmp/x"), "no model");
  expect_one_error_line(run_kvoffload("report /nonexistent/dir"), "report without summary");
}

}  // namespace
}  // namespace kvo
