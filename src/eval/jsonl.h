// JSON Lines in and out for datasets, predictions and results. Errors name the file and the
// 1-based line, because a bad row in a 50 MB file is otherwise impossible to find.
#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvo {

struct JsonlRow {
  size_t line = 0;  // 1-based physical line in the file
  nlohmann::json value;
  std::string where() const;  // "file:line", set by read_jsonl
  std::string file;
};

// Every non-blank line must be one JSON object; blank lines are skipped.
std::vector<JsonlRow> read_jsonl(const std::string& path);

// The string field `key` of a row, or a kvo::Error naming file, line and key.
const std::string& jsonl_string(const JsonlRow& row, const std::string& key);

// Writes rows, one compact JSON object per line (UTF-8 kept as is), replacing the file.
void write_jsonl(const std::string& path, const std::vector<nlohmann::ordered_json>& rows);

}  // namespace kvo
