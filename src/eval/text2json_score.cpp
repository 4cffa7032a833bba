#include "eval/text2json_score.h"

#include <set>

#include "util/error.h"

namespace kvo {
namespace {

constexpr std::string_view kRightQuote = "\xE2\x80\x99";  // U+2019 in UTF-8

}  // namespace

std::string normalize_quotes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, kRightQuote.size(), kRightQuote) == 0) {
      out += '\'';
      i += kRightQuote.size();
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::optional<std::string> comparable_text(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::string:
      return normalize_quotes(value.get_ref<const std::string&>());
    case nlohmann::json::value_t::number_integer:
      return std::to_string(value.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned:
      return std::to_string(value.get<uint64_t>());
    case nlohmann::json::value_t::number_float:
      return value.dump();
    default:
      return std::nullopt;
  }
}

Text2JsonGold parse_text2json_gold(std::string_view answer, std::string_view where) {
  nlohmann::json list = nlohmann::json::parse(answer, nullptr, /*allow_exceptions=*/false);
  check(!list.is_discarded(), "{}: the gold answer is not valid JSON", where);
  check(list.is_array(), "{}: the gold answer is not a JSON list", where);
  Text2JsonGold gold;
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::json& rec = list[i];
    check(rec.is_object(), "{}: gold record {} is not a JSON object", where, i + 1);
    auto name_it = rec.find("name");
    check(name_it != rec.end(), "{}: gold record {} has no \"name\"", where, i + 1);
    std::optional<std::string> name = comparable_text(*name_it);
    check(name.has_value(), "{}: gold record {} has a \"name\" that is not a string", where, i + 1);
    Text2JsonGoldRecord out;
    out.name = *name;
    for (const auto& [key, value] : rec.items()) {
      if (key == "name") continue;
      std::optional<std::string> text = comparable_text(value);
      check(text.has_value(), "{}: gold record {} key \"{}\" is not a string or number", where,
            i + 1, key);
      out.attributes.emplace_back(key, *text);
    }
    if (!seen.insert(out.name).second) gold.duplicate_names = true;
    gold.records.push_back(std::move(out));
  }
  return gold;
}

double score_text2json_prediction(const Text2JsonGold& gold, std::string_view prediction) {
  // Bracket rule first: nested lists, two lists or prose around brackets all score 0.
  size_t open_count = 0, close_count = 0, open_at = 0, close_at = 0;
  for (size_t i = 0; i < prediction.size(); ++i) {
    if (prediction[i] == '[') open_count++, open_at = i;
    if (prediction[i] == ']') close_count++, close_at = i;
  }
  if (open_count != 1 || close_count != 1 || open_at > close_at) return 0.0;
  nlohmann::json list = nlohmann::json::parse(prediction.substr(open_at, close_at - open_at + 1),
                                              nullptr, /*allow_exceptions=*/false);
  if (list.is_discarded() || !list.is_array()) return 0.0;

  std::vector<bool> used(gold.records.size(), false);
  double total = 0.0;
  size_t extra = 0;
  for (const nlohmann::json& rec : list) {
    const Text2JsonGoldRecord* match = nullptr;
    if (rec.is_object()) {
      auto name_it = rec.find("name");
      if (name_it != rec.end() && name_it->is_string()) {
        const std::string name = normalize_quotes(name_it->get_ref<const std::string&>());
        for (size_t g = 0; g < gold.records.size(); ++g) {
          if (!used[g] && gold.records[g].name == name) {
            used[g] = true;
            match = &gold.records[g];
            break;
          }
        }
      }
    }
    if (!match) {
      extra++;
      continue;
    }
    double score = 1.0;
    for (const auto& [key, gold_value] : match->attributes) {
      auto it = rec.find(key);
      if (it == rec.end() || it->is_null()) {
        score -= 0.5;
        continue;
      }
      std::optional<std::string> text = comparable_text(*it);
      if (!text || *text != gold_value) score -= 0.25;
    }
    total += score;
  }
  const size_t denominator = gold.records.size() + extra;
  if (denominator == 0) return 1.0;
  return total / double(denominator);
}

SampleScore score_text2json(std::string_view gold_answer, std::string_view prediction,
                            std::string_view where) {
  Text2JsonGold gold = parse_text2json_gold(gold_answer, where);
  SampleScore s;
  s.excluded = gold.duplicate_names;
  s.score = score_text2json_prediction(gold, prediction);
  return s;
}

Text2JsonSummary summarize_text2json(const std::vector<SampleScore>& scores) {
  Text2JsonSummary out;
  out.samples = scores.size();
  double sum = 0.0;
  for (const SampleScore& s : scores) {
    if (s.excluded) {
      out.excluded++;
      continue;
    }
    sum += s.score;
  }
  const size_t counted = out.samples - out.excluded;
  if (counted > 0) out.score = 100.0 * sum / double(counted);
  return out;
}

}  // namespace kvo
