// Contrast tasks with low context intensity (RULER- and HELMET-style): the answer sits in a few
// places of the prompt, so KV-offloading methods tend to look lossless on them. Each is
// generated offline as JSONL rows {"id", "task", "problem", "answers": [...], "prompt_tokens",
// ...} and scored by string_match_all (eval/string_match.h).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/prompt_fit.h"

namespace kvo {

struct TaskOptions {
  std::string task;
  int64_t target_tokens = 4096;
  size_t n = 1;
  uint64_t seed = 0;
  std::string haystack_dir;  // needed by the needle tasks only
};

using TaskGenerator = nlohmann::ordered_json (*)(const TaskOptions& options, size_t index,
                                                 const TokenCounter& count);

struct TaskInfo {
  std::string name;
  std::string description;
  TaskGenerator generate = nullptr;
  bool needs_haystack = false;
};

const std::vector<TaskInfo>& contrast_tasks();
const TaskInfo& contrast_task(const std::string& name);  // kvo::Error for unknown names

// All n rows of a task; row i depends only on (options.task, seed, tokens, i).
std::vector<nlohmann::ordered_json> generate_task(const TaskOptions& options,
                                                  const TokenCounter& count);

// The generators (one file each).
nlohmann::ordered_json generate_niah_multikey(const TaskOptions&, size_t, const TokenCounter&);
nlohmann::ordered_json generate_niah_multivalue(const TaskOptions&, size_t, const TokenCounter&);
nlohmann::ordered_json generate_variable_tracking(const TaskOptions&, size_t, const TokenCounter&);
nlohmann::ordered_json generate_frequent_words(const TaskOptions&, size_t, const TokenCounter&);
nlohmann::ordered_json generate_json_kv(const TaskOptions&, size_t, const TokenCounter&);

// The common row layout of every contrast task.
nlohmann::ordered_json task_row(const TaskOptions& options, size_t index, const FitResult& fit,
                                const std::vector<std::string>& answers);

}  // namespace kvo
