// The harness entry point: task dispatch, string_match_all, and the fidelity agreement.
#include "eval/score.h"

#include <gtest/gtest.h>

#include <fstream>

#include "eval/jsonl.h"
#include "eval/string_match.h"
#include "util/error.h"

namespace kvo {
namespace {

TEST(EvalStringMatch, FractionOfReferencesFoundCaseSensitive) {
  EXPECT_DOUBLE_EQ(string_match_all({"1234", "5678"}, "the numbers are 1234 and 9"), 0.5);
  EXPECT_DOUBLE_EQ(string_match_all({"abc"}, "ABC"), 0.0);
  EXPECT_DOUBLE_EQ(string_match_all({"abc", "def"}, "xx def abc"), 1.0);
  EXPECT_DOUBLE_EQ(string_match_all({}, "anything"), 0.0);
}

TEST(EvalScore, DispatchesOnTheTask) {
  const nlohmann::json released = {{"problem", "p"},
                                   {"answer", R"([{"name": "A", "x": "1", "y": "2"}])"}};
  EXPECT_EQ(sample_task(released), "text2json");
  EXPECT_DOUBLE_EQ(score_sample("text2json", released, R"([{"name": "A", "x": "1"}])").score, 0.5);
  const nlohmann::json niah = {{"task", "niah_multivalue"}, {"answers", {"11", "22", "33", "44"}}};
  EXPECT_EQ(sample_task(niah), "niah_multivalue");
  const SampleScore s = score_sample("niah_multivalue", niah, "11, 22 and 44");
  EXPECT_DOUBLE_EQ(s.score, 0.75);
  EXPECT_FALSE(s.excluded);
  EXPECT_THROW(score_sample("nope", niah, ""), Error);
  EXPECT_THROW(score_sample("json_kv", released, ""), Error);  // no "answers"
  EXPECT_THROW(score_sample("text2json", niah, ""), Error);    // no "answer"
}

TEST(EvalScore, AgreementWithTheDenseOutput) {
  const nlohmann::json row = {{"problem", "p"}, {"answer", "[]"}};
  const std::string dense = R"(Sure: [{"name": "A", "x": "1"}, {"name": "B", "x": "2"}])";
  EXPECT_DOUBLE_EQ(agreement_score("text2json", row, dense, dense), 1.0);
  EXPECT_DOUBLE_EQ(agreement_score("text2json", row, dense, R"([{"name": "A", "x": "1"}])"), 0.5);
  EXPECT_DOUBLE_EQ(agreement_score("text2json", row, "no list", "no list"), 1.0);
  EXPECT_DOUBLE_EQ(agreement_score("text2json", row, "no list", "[]"), 0.0);
  const nlohmann::json niah = {{"task", "niah_multivalue"}, {"answers", {"11", "22"}}};
  EXPECT_DOUBLE_EQ(agreement_score("niah_multivalue", niah, "11", "11"), 1.0);
  EXPECT_DOUBLE_EQ(agreement_score("niah_multivalue", niah, "11", "22"), 0.0);
  EXPECT_DOUBLE_EQ(agreement_score("niah_multivalue", niah, "11", "11 22"), 0.5);
}

TEST(EvalJsonl, BadLinesNameTheFileAndLine) {
  const std::string path = ::testing::TempDir() + "/eval_bad.jsonl";
  {
    std::ofstream out(path);
    out << "{\"prediction\": \"a\"}\n\n{\"prediction\": oops}\n";
  }
  try {
    read_jsonl(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":3"), std::string::npos) << e.what();
  }
  {
    std::ofstream out(path);
    out << "{\"prediction\": \"a\"}\n\n{\"other\": 1}\n";
  }
  const auto rows = read_jsonl(path);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].line, 3u);
  EXPECT_THROW(jsonl_string(rows[1], "prediction"), Error);
}

}  // namespace
}  // namespace kvo
