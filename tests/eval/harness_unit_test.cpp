// The eval harness's pieces that need no model: knob sweeps, cell ids, data-set resolution,
// torn-row recovery, summary pooling, the table and the HTML report.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "eval/harness.h"
#include "eval/report.h"
#include "util/error.h"

namespace kvo {
namespace {

namespace fs = std::filesystem;

TEST(HarnessKnobs, ValueListsKeepQuantizerSpecsWhole) {
  EXPECT_EQ(split_value_list("0.03,0.06"), (std::vector<std::string>{"0.03", "0.06"}));
  EXPECT_EQ(split_value_list("higgs:d=2,n=256,bf16"),
            (std::vector<std::string>{"higgs:d=2,n=256", "bf16"}));
  EXPECT_EQ(split_value_list("a,b;c"), (std::vector<std::string>{"a,b", "c"}));
  EXPECT_EQ(split_value_list("dense"), (std::vector<std::string>{"dense"}));
}

TEST(HarnessKnobs, ArgsBecomeSweeps) {
  auto s = parse_knob_args(
      {"--budget", "0.03,0.06", "--chunk=1", "--yakv:rank", "16", "--flag", "--budget", "0.1"});
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].name, "budget");
  EXPECT_EQ(s[0].values, (std::vector<std::string>{"0.03", "0.06", "0.1"}));
  EXPECT_EQ(s[1].name, "chunk");
  EXPECT_EQ(s[2].method, "yakv");
  EXPECT_EQ(s[2].name, "rank");
  EXPECT_EQ(s[3].name, "flag");
  EXPECT_EQ(s[3].values, (std::vector<std::string>{""}));
  EXPECT_THROW(parse_knob_args({"stray"}), Error);
  EXPECT_THROW(parse_knob_args({"--budget="}), Error);
  KnobSweep o = parse_kv_opt("quest:budget=0.1,0.2");
  EXPECT_EQ(o.method, "quest");
  EXPECT_EQ(o.values.size(), 2u);
  EXPECT_THROW(parse_kv_opt("budget"), Error);
}

TEST(HarnessKnobs, ExpansionIsACartesianProductWithDenseFirst) {
  const auto knobs = parse_knob_args({"--budget", "0.03,0.06", "--yakv:chunk", "1,8"});
  const auto specs = expand_methods({"yakv", "quest"}, knobs, /*add_dense=*/true);
  ASSERT_EQ(specs.size(), 1u + 4u + 2u);
  EXPECT_EQ(specs[0].label(), "dense");
  EXPECT_EQ(specs[1].label(), "yakv budget=0.03,chunk=1");
  EXPECT_EQ(specs[2].label(), "yakv budget=0.03,chunk=8");
  EXPECT_EQ(specs[4].label(), "yakv budget=0.06,chunk=8");
  EXPECT_EQ(specs[5].label(), "quest budget=0.03");
  EXPECT_EQ(expand_methods({"yakv"}, {}, false).size(), 1u);
  EXPECT_EQ(expand_methods({"yakv", "dense"}, {}, false)[0].method, "dense");
  EXPECT_THROW(expand_methods({"yakv", "yakv"}, {}, true), Error);
  EXPECT_THROW(expand_methods({"yakv", ""}, {}, true), Error);
  EXPECT_THROW(expand_methods({"yakv"}, parse_knob_args({"--quest:budget", "1"}), true), Error);
  EXPECT_THROW(expand_methods({"yakv"}, parse_knob_args({"--dense:budget", "1"}), true), Error);
}

TEST(HarnessCells, IdsAndFileNames) {
  EvalCell c{{"text2json", "2k", "/x"},
             {"yakv", {{"budget", "0.03"}, {"landmarks", "higgs:d=2,n=256"}}}};
  EXPECT_EQ(c.id(), "text2json/2k/yakv/budget=0.03,landmarks=higgs:d=2,n=256");
  const std::string f = c.file_name();
  EXPECT_EQ(f.find('/'), std::string::npos);
  EXPECT_EQ(f.substr(f.size() - 6), ".jsonl");
  EvalCell d{{"text2json", "2k", "/x"},
             {"yakv", {{"budget", "0.03"}, {"landmarks", "higgs:d=2,n=16"}}}};
  EXPECT_NE(c.file_name(), d.file_name());
  EXPECT_EQ((EvalCell{{"niah_multikey", "4k", ""}, {"dense", {}}}).file_name(),
            "niah_multikey.4k.dense.jsonl");
}

TEST(HarnessData, ShippedSetsResolveByLength) {
  const std::string dir = default_data_dir();
  auto sets = resolve_datasets({"text2json", "niah_multikey"}, {2048, 4096}, dir);
  ASSERT_EQ(sets.size(), 4u);
  EXPECT_EQ(sets[0].task, "text2json");
  EXPECT_EQ(sets[0].length, "2k");
  EXPECT_TRUE(fs::exists(sets[0].path));
  EXPECT_TRUE(fs::exists(sets[3].path));
  EXPECT_EQ(sets[3].path.substr(sets[3].path.size() - 22), "niah_multikey-4k.jsonl");
  EXPECT_GE(shipped_lengths(dir, "text2json").size(), 4u);
  EXPECT_EQ(resolve_datasets({"json_kv"}, {}, dir).size(), shipped_lengths(dir, "json_kv").size());
  EXPECT_THROW(resolve_datasets({"nosuch"}, {}, dir), Error);
  EXPECT_THROW(resolve_datasets({"json_kv"}, {3000}, dir), Error);
  EXPECT_THROW(resolve_datasets({"json_kv"}, {1 << 20}, dir), Error);
  EXPECT_EQ(task_generation_limit("text2json"), 1024);
}

TEST(HarnessRows, ATornLastLineIsCutOff) {
  const fs::path p = fs::path(::testing::TempDir()) / "kvo_harness_torn.jsonl";
  std::ofstream(p, std::ios::binary) << "{\"sample_id\":\"a\"}\n{\"sample_id\":\"b\"}\n{\"samp";
  auto rows = read_cell_rows(p.string());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(fs::file_size(p), std::string("{\"sample_id\":\"a\"}\n{\"sample_id\":\"b\"}\n").size());
  EXPECT_TRUE(read_cell_rows((p.string() + ".absent")).empty());
  std::ofstream(p, std::ios::binary) << "garbage\n{\"sample_id\":\"b\"}\n";
  EXPECT_THROW(read_cell_rows(p.string()), Error);
  fs::remove(p);
}

EvalSummary fake_summary() {
  EvalSummary s;
  s.model = "m.gguf";
  s.device = "cpu";
  auto cell = [](std::string task, std::string len, std::string method, std::string knobs,
                 double score, double frac, int64_t prompt) {
    CellSummary c;
    c.task = std::move(task);
    c.length = std::move(len);
    c.method = std::move(method);
    c.knobs = std::move(knobs);
    c.id = c.task + "/" + c.length + "/" + c.method + (c.knobs.empty() ? "" : "/" + c.knobs);
    c.rows = 3;
    c.skipped = 1;
    c.scored = 2;
    c.score_sum = 2 * score;
    c.fidelity_n = 2;
    c.fidelity_sum = 2 * score;
    c.prompt_tokens = 2 * prompt;
    c.kv_capacity = 2 * (prompt + 100);
    c.gpu_bytes = 1000.0 * frac * double(c.kv_capacity);
    c.paired_dense_gpu_bytes = 1000.0 * double(c.kv_capacity);
    c.paired_gpu_bytes = c.gpu_bytes;
    c.output_tokens = 20;
    c.decode_tokens = 18;
    c.decode_seconds = 1.0;
    c.prefill_seconds = 2.0;
    c.pcie_bytes_per_step = frac < 1 ? 2 * 134.2e6 * frac : 0;  // a sum over the 2 samples
    return c;
  };
  for (const char* len : {"2k", "4k"}) {
    const int64_t p = len[0] == '2' ? 2048 : 4096;
    s.cells.push_back(cell("text2json", len, "dense", "", 0.5, 1.0, p));
    s.cells.push_back(cell("text2json", len, "yakv", "budget=0.03", 0.4, 0.05, p));
    s.cells.push_back(cell("text2json", len, "yakv", "budget=0.06", 0.45, 0.08, p));
    s.cells.push_back(cell("niah_multikey", len, "dense", "", 1.0, 1.0, p));
    s.cells.push_back(cell("niah_multikey", len, "yakv", "budget=0.03", 1.0, 0.05, p));
  }
  return s;
}

TEST(HarnessSummary, JsonRoundTripAndPooling) {
  const EvalSummary s = fake_summary();
  const EvalSummary back = EvalSummary::from_json(nlohmann::json::parse(s.to_json().dump()));
  ASSERT_EQ(back.cells.size(), s.cells.size());
  EXPECT_DOUBLE_EQ(back.cells[1].score(), 40.0);
  EXPECT_NEAR(back.cells[1].fraction_of_dense(), 0.05, 1e-12);
  EXPECT_EQ(back.cells[1].ran(), 2);
  EXPECT_EQ(back.cells[1].skipped, 1);
  CellSummary pooled = back.cells[0];
  pooled.add(back.cells[5]);
  EXPECT_DOUBLE_EQ(pooled.score(), 50.0);
  EXPECT_EQ(pooled.ran(), 4);
  CellSummary empty;
  EXPECT_TRUE(std::isnan(empty.score()));
  EXPECT_TRUE(std::isnan(empty.fraction_of_dense()));
  EXPECT_THROW(EvalSummary::from_json(nlohmann::json::object()), Error);
}

TEST(HarnessSummary, TableHasOneLinePerCellAndSaysTooLong) {
  const std::string t = format_summary_table(fake_summary());
  EXPECT_NE(t.find("score"), std::string::npos);
  EXPECT_NE(t.find("fidelity"), std::string::npos);
  EXPECT_NE(t.find("yakv budget=0.06"), std::string::npos);
  EXPECT_NE(t.find("1 too long"), std::string::npos);
  EXPECT_NE(t.find("0.050"), std::string::npos);
  EXPECT_NE(t.find("PCIe/step"), std::string::npos);
  EXPECT_NE(t.find("6552.7 KiB"), std::string::npos);  // 134.2 MB x 0.05, the mean of 2 samples
  EXPECT_NE(t.find("10.2 MiB"), std::string::npos);    // 134.2 MB x 0.08
}

TEST(HarnessReport, PageIsSelfContainedWithPlots) {
  const std::string html = render_report_html(fake_summary(), "test <report>");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("score vs GPU KV memory"), std::string::npos);
  EXPECT_NE(html.find("score vs prompt length"), std::string::npos);
  EXPECT_NE(html.find("<table>"), std::string::npos);
  EXPECT_NE(html.find("test &lt;report&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://www.w3.org/2000/svg\" width"), html.find("http://"));  // no links
  // A summary with nothing scored still renders.
  EvalSummary none;
  CellSummary c;
  c.id = "t/2k/dense";
  c.task = "t";
  c.length = "2k";
  c.method = "dense";
  c.rows = c.skipped = 2;
  none.cells.push_back(c);
  const std::string empty = render_report_html(none, "empty");
  EXPECT_NE(empty.find("no scored samples"), std::string::npos);
}

}  // namespace
}  // namespace kvo
