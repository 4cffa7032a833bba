#include "eval/datasets.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>

#include "eval/tasks.h"
#include "util/error.h"
#include "util/text.h"

namespace kvo {
namespace fs = std::filesystem;
namespace {

std::string length_label(int64_t tokens) {
  return fmt::format("{}k", tokens / 1024);
}

std::string shipped_path(const std::string& data_dir, const std::string& task,
                         const std::string& length) {
  const std::string sub = task == "text2json" ? "text2json" : "tasks";
  return (fs::path(data_dir) / sub / (task + "-" + length + ".jsonl")).string();
}

}  // namespace

std::string default_data_dir() {
  std::vector<fs::path> candidates;
  if (const char* d = std::getenv("KVOFFLOAD_DATA_DIR"); d && *d) candidates.emplace_back(d);
#ifdef KVO_SOURCE_DIR
  candidates.push_back(fs::path(KVO_SOURCE_DIR) / "data");
#endif
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path dir = exe.parent_path(); dir.has_relative_path(); dir = dir.parent_path())
      candidates.push_back(dir / "data");
  }
  candidates.push_back("data");
  for (const fs::path& p : candidates) {
    if (fs::is_directory(p / "text2json", ec) || fs::is_directory(p / "tasks", ec))
      return fs::weakly_canonical(p, ec).string();
  }
  fail("cannot find the shipped data sets (data/text2json, data/tasks); pass --data-dir DIR");
}

std::vector<std::string> shipped_tasks() {
  std::vector<std::string> names{"text2json"};
  for (const TaskInfo& t : contrast_tasks()) names.push_back(t.name);
  return names;
}

std::vector<int64_t> shipped_lengths(const std::string& data_dir, const std::string& task) {
  const fs::path dir = fs::path(data_dir) / (task == "text2json" ? "text2json" : "tasks");
  std::vector<int64_t> lengths;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return lengths;
  const std::regex re(task + "-([0-9]+)k\\.jsonl");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, re)) lengths.push_back(std::stoll(m[1].str()) * 1024);
  }
  std::sort(lengths.begin(), lengths.end());
  return lengths;
}

std::vector<EvalDataset> resolve_datasets(const std::vector<std::string>& tasks,
                                          const std::vector<int64_t>& lengths,
                                          const std::string& data_dir) {
  const std::vector<std::string> known = shipped_tasks();
  std::vector<EvalDataset> out;
  for (const std::string& raw : tasks) {
    const std::string task = trim(raw);
    check(std::find(known.begin(), known.end(), task) != known.end(),
          "unknown task '{}' (available: {}; or --data FILE for your own JSONL)", task,
          join(known, ", "));
    const std::vector<int64_t> have = shipped_lengths(data_dir, task);
    std::vector<std::string> have_labels;
    for (int64_t n : have) have_labels.push_back(length_label(n));
    check(!have.empty(), "no shipped sets for task '{}' in {}", task, data_dir);
    for (int64_t n : lengths.empty() ? have : lengths) {
      check(n % 1024 == 0 && std::find(have.begin(), have.end(), n) != have.end(),
            "no shipped {} set of {} tokens (shipped: {}); --data FILE runs your own", task, n,
            join(have_labels, ", "));
      const std::string label = length_label(n);
      out.push_back({task, label, shipped_path(data_dir, task, label)});
    }
  }
  return out;
}

EvalDataset user_dataset(const std::string& path) {
  std::error_code ec;
  check(fs::is_regular_file(path, ec), "--data {}: no such file", path);
  std::string stem = fs::path(path).stem().string();
  for (char& c : stem) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  }
  return {stem, "all", path};
}

int task_generation_limit(const std::string& task) {
  static const std::map<std::string, int> limits = {
      {"text2json", 1024},       {"niah_multikey", 128}, {"niah_multivalue", 128},
      {"variable_tracking", 64}, {"frequent_words", 64}, {"json_kv", 128}};
  auto it = limits.find(task);
  return it == limits.end() ? 256 : it->second;
}

}  // namespace kvo
