#include "eval/tasks.h"

#include <fmt/format.h>

#include "util/error.h"

namespace kvo {

const std::vector<TaskInfo>& contrast_tasks() {
  static const std::vector<TaskInfo> tasks = {
      {"niah_multikey", "RULER multi-key needle: several keyed numbers in essays, recall one",
       generate_niah_multikey, true},
      {"niah_multivalue", "RULER multi-value needle: recall all numbers stored under one key",
       generate_niah_multivalue, true},
      {"variable_tracking", "RULER variable tracking: follow a chain of VAR assignments",
       generate_variable_tracking, false},
      {"frequent_words", "RULER frequent-word extraction: the three most frequent coded words",
       generate_frequent_words, false},
      {"json_kv", "HELMET JSON key-value retrieval: the value of one UUID key", generate_json_kv,
       false},
  };
  return tasks;
}

const TaskInfo& contrast_task(const std::string& name) {
  std::string known;
  for (const TaskInfo& t : contrast_tasks()) {
    if (t.name == name) return t;
    known += (known.empty() ? "" : ", ") + t.name;
  }
  fail("unknown task '{}' (known: {})", name, known);
}

std::vector<nlohmann::ordered_json> generate_task(const TaskOptions& options,
                                                  const TokenCounter& count) {
  const TaskInfo& info = contrast_task(options.task);
  check(options.target_tokens >= 1024 && options.target_tokens <= 262144,
        "--tokens must be in 1024..262144 (got {})", options.target_tokens);
  std::vector<nlohmann::ordered_json> rows;
  for (size_t i = 0; i < options.n; ++i) rows.push_back(info.generate(options, i, count));
  return rows;
}

nlohmann::ordered_json task_row(const TaskOptions& options, size_t index, const FitResult& fit,
                                const std::vector<std::string>& answers) {
  nlohmann::ordered_json row;
  row["id"] =
      fmt::format("{}-{}k-{:04d}", options.task, (options.target_tokens + 512) / 1024, index);
  row["task"] = options.task;
  row["target_tokens"] = options.target_tokens;
  row["prompt_tokens"] = fit.tokens;
  row["seed"] = options.seed;
  row["index"] = index;
  row["problem"] = fit.text;
  row["answers"] = answers;
  return row;
}

}  // namespace kvo
