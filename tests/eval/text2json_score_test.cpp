// One test per scoring rule of DESIGN.md §5, plus the edge cases the rules leave open.
#include "eval/text2json_score.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace kvo {
namespace {

const char* kGold = R"([{"name": "Alpha", "price": "$10", "year": "2001"},)"
                    R"( {"name": "Beta", "price": "$20", "year": "2002"}])";

double score(const std::string& prediction, const std::string& gold = kGold) {
  return score_text2json(gold, prediction).score;
}

TEST(Text2JsonScore, PerfectPredictionScoresOne) {
  EXPECT_DOUBLE_EQ(score(std::string("Here you go: ") + kGold + " Done."), 1.0);
}

TEST(Text2JsonScore, DuplicateGoldNamesExcludeTheSample) {
  const std::string gold =
      R"([{"name": "A", "k": "1", "v": "2"}, {"name": "A", "k": "3", "v": "4"}])";
  EXPECT_TRUE(score_text2json(gold, gold).excluded);
  EXPECT_FALSE(score_text2json(kGold, kGold).excluded);
  // Excluded samples are left out of the mean, not counted as zeros.
  Text2JsonSummary s = summarize_text2json({{0.5, false}, {0.0, true}, {1.0, false}});
  EXPECT_DOUBLE_EQ(s.score, 75.0);
  EXPECT_EQ(s.samples, 3u);
  EXPECT_EQ(s.excluded, 1u);
}

TEST(Text2JsonScore, DuplicateGoldNamesAfterQuoteNormalization) {
  const std::string gold =
      "[{\"name\": \"Kay's\", \"k\": \"1\"}, {\"name\": \"Kay\xE2\x80\x99s\", \"k\": \"2\"}]";
  EXPECT_TRUE(score_text2json(gold, "[]").excluded);
}

TEST(Text2JsonScore, BracketRuleNeedsExactlyOneOpenAndOneClose) {
  const std::string one = R"({"name": "Alpha", "price": "$10", "year": "2001"})";
  EXPECT_DOUBLE_EQ(score("[" + one + "]"), 0.5);
  EXPECT_DOUBLE_EQ(score("[" + one + "] and [x]"), 0.0);  // two '['
  EXPECT_DOUBLE_EQ(score("[[" + one + "]]"), 0.0);        // nested list
  EXPECT_DOUBLE_EQ(score("[" + one + "] ]"), 0.0);        // two ']'
  EXPECT_DOUBLE_EQ(score("] " + one + " ["), 0.0);        // ']' before '['
  EXPECT_DOUBLE_EQ(score(one), 0.0);                      // no brackets
  EXPECT_DOUBLE_EQ(score("[" + one), 0.0);                // unclosed
  // A bracket inside a string value counts too: that is the reference behaviour.
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "[10]", "year": "2001"}])"), 0.0);
}

TEST(Text2JsonScore, UnparsableListScoresZero) {
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "$10", "year": "2001",}])"), 0.0);
  EXPECT_DOUBLE_EQ(score(R"([{'name': 'Alpha'}])"), 0.0);
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "$10")"
                         "\n]"),
                   0.0);
}

TEST(Text2JsonScore, MissingOrNullKeysCostHalfEach) {
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "$10"}, )"
                         R"({"name": "Beta", "price": "$20", "year": "2002"}])"),
                   (0.5 + 1.0) / 2);
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": null, "year": null}])"), 0.0 / 2);
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha"}, {"name": "Beta", "year": "2002"}])"),
                   (0.0 + 0.5) / 2);
}

TEST(Text2JsonScore, WrongValuesCostAQuarterEach) {
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "$11", "year": "2001"}, )"
                         R"({"name": "Beta", "price": "$21", "year": "2003"}])"),
                   (0.75 + 0.5) / 2);
  // Exact string match: case and whitespace matter.
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "$10 ", "year": "2001"}])"), 0.75 / 2);
  // Extra keys in a predicted record are ignored.
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "$10", "year": "2001", "x": 1}])"),
                   1.0 / 2);
}

TEST(Text2JsonScore, ExtraRecordsGrowTheDenominator) {
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "$10", "year": "2001"}, )"
                         R"({"name": "Beta", "price": "$20", "year": "2002"}, )"
                         R"({"name": "Gamma", "price": "$30", "year": "2003"}])"),
                   2.0 / 3);
}

TEST(Text2JsonScore, UnnamedRecordsGrowTheDenominator) {
  EXPECT_DOUBLE_EQ(score(R"([{"price": "$10", "year": "2001"}, )"
                         R"({"name": "Beta", "price": "$20", "year": "2002"}])"),
                   1.0 / 3);
  // A name that is not a string counts as no name.
  EXPECT_DOUBLE_EQ(score(R"([{"name": 7, "price": "$10", "year": "2001"}])"), 0.0 / 3);
  // So does a record that is not an object.
  EXPECT_DOUBLE_EQ(score(R"(["Alpha", {"name": "Beta", "price": "$20", "year": "2002"}])"),
                   1.0 / 3);
}

TEST(Text2JsonScore, NameMatchesOnlyAnUnmatchedGoldName) {
  // The second "Alpha" finds no unmatched gold name, so it is an extra record.
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "$10", "year": "2001"}, )"
                         R"({"name": "Alpha", "price": "$10", "year": "2001"}, )"
                         R"({"name": "Beta", "price": "$20", "year": "2002"}])"),
                   2.0 / 3);
  // The first record with a name uses it up, even when a later one would score better.
  EXPECT_DOUBLE_EQ(
      score(R"([{"name": "Alpha"}, {"name": "Alpha", "price": "$10", "year": "2001"}])"), 0.0 / 3);
}

TEST(Text2JsonScore, RightSingleQuoteEqualsApostrophe) {
  const std::string gold = "[{\"name\": \"Kay\xE2\x80\x99s Cafe\", \"owner\": \"O'Neil\"}]";
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Kay's Cafe", "owner": "O'Neil"}])", gold), 1.0);
  EXPECT_DOUBLE_EQ(score("[{\"name\": \"Kay's Cafe\", \"owner\": \"O\xE2\x80\x99Neil\"}]", gold),
                   1.0);
  // Only U+2019 is mapped; U+2018 stays different.
  EXPECT_DOUBLE_EQ(score("[{\"name\": \"Kay's Cafe\", \"owner\": \"O\xE2\x80\x98Neil\"}]", gold),
                   0.75);
}

TEST(Text2JsonScore, IntegersCompareAsDecimalStrings) {
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Alpha", "price": "$10", "year": 2001}, )"
                         R"({"name": "Beta", "price": "$20", "year": 2002}])"),
                   1.0);
  const std::string gold = R"([{"name": "A", "n": "-7", "m": "12"}])";
  EXPECT_DOUBLE_EQ(score(R"([{"name": "A", "n": -7, "m": 12}])", gold), 1.0);
  // Gold integers are read the same way.
  EXPECT_DOUBLE_EQ(
      score(R"([{"name": "A", "n": "-7", "m": "12"}])", R"([{"name": "A", "n": -7, "m": 12}])"),
      1.0);
}

TEST(Text2JsonScore, NonIntegerNumbersCompareByTheirJsonText) {
  const std::string gold = R"([{"name": "A", "w": "2.5", "h": "3"}])";
  EXPECT_DOUBLE_EQ(score(R"([{"name": "A", "w": 2.5, "h": 3}])", gold), 1.0);
  EXPECT_DOUBLE_EQ(score(R"([{"name": "A", "w": 2.50, "h": 3.0}])", gold), 0.75);  // "3.0"
  // Booleans and objects never equal a gold string.
  EXPECT_DOUBLE_EQ(score(R"([{"name": "A", "w": true, "h": {"v": "3"}}])", gold), 0.5);
}

TEST(Text2JsonScore, RecordOrderDoesNotMatter) {
  EXPECT_DOUBLE_EQ(score(R"([{"name": "Beta", "price": "$20", "year": "2002"}, )"
                         R"({"name": "Alpha", "price": "$10", "year": "2001"}])"),
                   1.0);
}

TEST(Text2JsonScore, EmptyListsAndEmptyPredictions) {
  EXPECT_DOUBLE_EQ(score("[]"), 0.0);
  EXPECT_DOUBLE_EQ(score(""), 0.0);
  EXPECT_DOUBLE_EQ(score("[]", "[]"), 1.0);
  EXPECT_DOUBLE_EQ(score(R"([{"name": "X"}])", "[]"), 0.0);
}

TEST(Text2JsonScore, FinalScoreIsHundredTimesTheMean) {
  Text2JsonSummary s = summarize_text2json({{1.0, false}, {0.25, false}});
  EXPECT_DOUBLE_EQ(s.score, 62.5);
  EXPECT_TRUE(std::isnan(summarize_text2json({{1.0, true}}).score));
}

TEST(Text2JsonScore, MalformedGoldIsADataError) {
  EXPECT_THROW(score_text2json("not json", "[]", "g.jsonl:3"), Error);
  EXPECT_THROW(score_text2json(R"({"name": "A"})", "[]"), Error);
  EXPECT_THROW(score_text2json(R"([{"price": "1"}])", "[]"), Error);
  try {
    score_text2json("[", "[]", "g.jsonl:3");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("g.jsonl:3"), std::string::npos);
  }
}

}  // namespace
}  // namespace kvo
