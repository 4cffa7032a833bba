// Text2JSON sample generator: long documents about fictional entities of one category, in
// varied prose spread across paragraphs, mixed with distractors (other categories, attributes
// not asked for) and essay filler, ending with an extraction instruction. The gold answer is a
// JSON list with exactly the keys "name", <attr1>, <attr2> (string values) per record.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/prompt_fit.h"

namespace kvo {

struct Text2JsonOptions {
  std::vector<std::string> domains;  // sample i uses domains[i % size]
  int records_min = 10;              // records per sample, drawn uniformly in [min, max]
  int records_max = 10;
  int64_t target_tokens = 8192;  // 2K..128K
  uint64_t seed = 0;
  size_t samples = 1;
  std::string haystack_dir;          // folder of *.txt filler essays
  int64_t max_answer_tokens = 1023;  // the gold answer must fit the 1024-token generation limit
  std::string id_prefix = "t2j";
};

// One sample (a JSONL row): id, domain, category, attributes, records, target_tokens,
// prompt_tokens, answer_tokens, seed, problem, answer. Depends only on (options, index).
nlohmann::ordered_json generate_text2json_sample(const Text2JsonOptions& options, size_t index,
                                                 const TokenCounter& count);

std::vector<nlohmann::ordered_json> generate_text2json(const Text2JsonOptions& options,
                                                       const TokenCounter& count);

}  // namespace kvo
