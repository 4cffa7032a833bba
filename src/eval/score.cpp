#include "eval/score.h"

#include "eval/string_match.h"
#include "eval/tasks.h"
#include "util/error.h"

namespace kvo {
namespace {

std::vector<std::string> reference_answers(const nlohmann::json& sample, const std::string& where) {
  auto it = sample.find("answers");
  check(it != sample.end() && it->is_array(), "{}: no \"answers\" list", where);
  std::vector<std::string> answers;
  for (const auto& a : *it) {
    check(a.is_string(), "{}: \"answers\" must hold strings", where);
    answers.push_back(a.get<std::string>());
  }
  return answers;
}

const std::string& gold_answer(const nlohmann::json& sample, const std::string& where) {
  auto it = sample.find("answer");
  check(it != sample.end() && it->is_string(), "{}: no string \"answer\" field", where);
  return it->get_ref<const std::string&>();
}

// The list a text2json output holds by the bracket rule, as a gold list; nullopt if none.
std::optional<Text2JsonGold> output_as_gold(const std::string& output) {
  const size_t open = output.find('['), close = output.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open ||
      output.find('[', open + 1) != std::string::npos ||
      output.find(']', close + 1) != std::string::npos) {
    return std::nullopt;
  }
  nlohmann::json list = nlohmann::json::parse(output.substr(open, close - open + 1), nullptr,
                                              /*allow_exceptions=*/false);
  if (list.is_discarded() || !list.is_array()) return std::nullopt;
  Text2JsonGold gold;
  for (const auto& rec : list) {
    if (!rec.is_object()) continue;
    auto name = rec.find("name");
    if (name == rec.end() || !name->is_string()) continue;
    Text2JsonGoldRecord g;
    g.name = normalize_quotes(name->get<std::string>());
    for (const auto& [key, value] : rec.items()) {
      if (key == "name") continue;
      if (auto text = comparable_text(value)) g.attributes.emplace_back(key, *text);
    }
    gold.records.push_back(std::move(g));
  }
  return gold;
}

}  // namespace

std::string sample_task(const nlohmann::json& sample) {
  auto it = sample.find("task");
  if (it != sample.end() && it->is_string()) return it->get<std::string>();
  return "text2json";
}

SampleScore score_sample(const std::string& task, const nlohmann::json& sample,
                         const std::string& output, const std::string& where) {
  if (task == "text2json") return score_text2json(gold_answer(sample, where), output, where);
  contrast_task(task);  // unknown names fail here with the list of known ones
  return {string_match_all(reference_answers(sample, where), output), false};
}

double agreement_score(const std::string& task, const nlohmann::json& sample,
                       const std::string& reference_output, const std::string& output) {
  if (task == "text2json") {
    std::optional<Text2JsonGold> gold = output_as_gold(reference_output);
    if (!gold) return reference_output == output ? 1.0 : 0.0;
    return score_text2json_prediction(*gold, output);
  }
  const std::vector<std::string> answers = reference_answers(sample, "sample");
  if (answers.empty()) return 1.0;
  size_t agree = 0;
  for (const std::string& a : answers) {
    const bool in_ref = reference_output.find(a) != std::string::npos;
    const bool in_out = output.find(a) != std::string::npos;
    agree += in_ref == in_out;
  }
  return double(agree) / double(answers.size());
}

}  // namespace kvo
