// Text2JSON model outputs and gold answers mutated from valid ones (fuzz.h): a prediction, however
// broken, scores within [0, 1] against a gold list of two attributes and never throws; a gold
// answer parses or raises kvo::Error.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/text2json_score.h"
#include "fuzz.h"

namespace kvo {
namespace {

const char* kGold = R"([{"name": "Alpha", "price": "$10", "year": 2001},)"
                    R"( {"name": "Beta \u2019s", "price": "$20", "year": "2002"}])";

// clang-format off
const std::vector<std::string> kTokens = {
    "[", "]", "{", "}", ",", ":", "\"", "\\", "\\u2019", "\xe2\x80\x99", "\xff", "\n", " ", "",
    "name", "price", "year", "Alpha", "Beta", "null", "true", "1e999", "-0", "2001", "2001.0",
    "\"2001\"", "```json", "```", "[]", "{}", R"({"name": "Alpha", "price": "$10", "year": 2001})"};
// clang-format on

TEST(Text2JsonFuzz, BrokenPredictionsScoreWithinZeroAndOne) {
  const Text2JsonGold gold = parse_text2json_gold(kGold, "fuzz");
  const std::vector<std::string> seeds = {std::string("Sure: ") + kGold, kGold, "[]",
                                          "```json\n" + std::string(kGold) + "\n```"};
  int accepted = 0, rejected = 0;
  test::fuzz_texts(
      seeds, kTokens, test::fuzz_seed_or(11),
      [&](const std::string& prediction) {
        const double s = score_text2json_prediction(gold, prediction);
        ASSERT_TRUE(s >= 0.0 && s <= 1.0) << "score " << s << " for: " << prediction;
      },
      &accepted, &rejected);
  EXPECT_EQ(accepted, test::fuzz_iterations());  // a prediction is never rejected, only scored
}

TEST(Text2JsonFuzz, BrokenGoldParsesOrRaisesError) {
  int accepted = 0, rejected = 0;
  test::fuzz_texts(
      std::vector<std::string>{kGold}, kTokens, test::fuzz_seed_or(13),
      [&](const std::string& answer) {
        const Text2JsonGold gold = parse_text2json_gold(answer, "fuzz");
        const double s = score_text2json_prediction(gold, answer);
        ASSERT_TRUE(std::isfinite(s) && s <= 1.0) << "score " << s << " for: " << answer;
      },
      &accepted, &rejected);
  EXPECT_EQ(accepted + rejected, test::fuzz_iterations());
  EXPECT_GT(rejected, test::fuzz_iterations() / 4);
}

}  // namespace
}  // namespace kvo
