// The Text2JSON scorer with the reference semantics of DESIGN.md §5, rule for rule:
//  - a gold list with a duplicate name excludes the sample from the average;
//  - the prediction must hold exactly one '[' and one ']' with '[' first, and the text between
//    them (inclusive) must parse as a JSON list, else the sample scores 0;
//  - names and values are compared after replacing U+2019 with "'"; integers compare as their
//    decimal strings;
//  - a predicted record without a string "name", or whose name is not among the still unmatched
//    gold names, grows the denominator by 1; otherwise it scores 1 - 0.5 per gold key missing or
//    null - 0.25 per wrong value, and uses that gold name up;
//  - sample score = sum of record scores / (gold records + extra predicted records);
//  - final score = 100 x mean over the samples that are not excluded.
// Choices where the rules are silent (documented so results are reproducible):
//  - non-integer numbers compare by their JSON text (nlohmann dump: 2.5 -> "2.5", 2.0 -> "2.0");
//    booleans, objects and arrays never equal a gold value (they count as wrong values);
//  - a predicted record that is not an object has no string "name" (denominator grows);
//  - duplicate gold names are detected after the U+2019 replacement;
//  - an empty gold list with an empty predicted list scores 1 (0/0 has nothing to miss);
//  - the gold answer is parsed as JSON too; a malformed gold answer is a data error, not a 0.
#pragma once
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvo {

struct Text2JsonGoldRecord {
  std::string name;
  // Gold attribute keys (every key but "name") with their normalized values.
  std::vector<std::pair<std::string, std::string>> attributes;
};

struct Text2JsonGold {
  std::vector<Text2JsonGoldRecord> records;
  bool duplicate_names = false;  // such a sample is excluded from the average
};

struct SampleScore {
  double score = 0.0;     // in [0, 1] for well-formed gold (may dip below 0 with >2 attributes)
  bool excluded = false;  // true: leave the sample out of the mean
};

// Replaces every U+2019 (right single quote) with an ASCII apostrophe.
std::string normalize_quotes(std::string_view text);
// The comparable text of a JSON value: strings as themselves, integers as decimal strings,
// other numbers as their JSON dump, all with U+2019 normalized; nullopt for null, booleans,
// objects and arrays.
std::optional<std::string> comparable_text(const nlohmann::json& value);

// Parses a gold answer (a JSON list of objects with a "name"); `where` names the sample in
// error messages (e.g. "gold.jsonl:12").
Text2JsonGold parse_text2json_gold(std::string_view answer, std::string_view where);

// Score of one prediction against a parsed gold list (duplicate names do not matter here).
double score_text2json_prediction(const Text2JsonGold& gold, std::string_view prediction);

// Both steps at once: the per-sample score and whether the sample is excluded.
SampleScore score_text2json(std::string_view gold_answer, std::string_view prediction,
                            std::string_view where = "gold answer");

struct Text2JsonSummary {
  double score = NAN;  // 100 x mean over non-excluded samples; NaN when all are excluded
  size_t samples = 0;
  size_t excluded = 0;
};
Text2JsonSummary summarize_text2json(const std::vector<SampleScore>& scores);

}  // namespace kvo
