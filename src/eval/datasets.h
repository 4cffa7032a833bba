// The data sets of `kvoffload eval`: the shipped Text2JSON and contrast-task files under data/
// by (task, length), or a user's own JSONL.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kvo {

struct EvalDataset {
  std::string task;    // label: a task name, or the file's stem for --data
  std::string length;  // "2k", "4k", ... or "all" for --data
  std::string path;
};

// data/ of the checkout (compiled-in source dir, else beside the binary, else ./data).
std::string default_data_dir();
// Task names with shipped sets (text2json + the contrast tasks).
std::vector<std::string> shipped_tasks();
// The lengths (in tokens) shipped for a task in `data_dir`, ascending.
std::vector<int64_t> shipped_lengths(const std::string& data_dir, const std::string& task);
// The shipped file of each (task, length); every shipped length when `lengths` is empty.
// kvo::Error names the task or length that has no file and lists what exists.
std::vector<EvalDataset> resolve_datasets(const std::vector<std::string>& tasks,
                                          const std::vector<int64_t>& lengths,
                                          const std::string& data_dir);
// A user's own JSONL (released Text2JSON format or ours) as one dataset.
EvalDataset user_dataset(const std::string& path);

// The task's own generation limit: Text2JSON 1024 (DESIGN.md §5), the contrast tasks less.
int task_generation_limit(const std::string& task);

}  // namespace kvo
