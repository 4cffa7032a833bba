#include "eval/jsonl.h"

#include <filesystem>
#include <fstream>

#include "util/error.h"

namespace kvo {

std::string JsonlRow::where() const {
  return fmt::format("{}:{}", file, line);
}

std::vector<JsonlRow> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), "cannot read {}", path);
  std::vector<JsonlRow> rows;
  std::string text;
  size_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    JsonlRow row;
    row.line = line;
    row.file = path;
    try {
      row.value = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      fail("{}:{}: not valid JSON ({})", path, line, e.what());
    }
    check(row.value.is_object(), "{}:{}: expected a JSON object per line", path, line);
    rows.push_back(std::move(row));
  }
  return rows;
}

const std::string& jsonl_string(const JsonlRow& row, const std::string& key) {
  auto it = row.value.find(key);
  check(it != row.value.end(), "{}: no \"{}\" field", row.where(), key);
  check(it->is_string(), "{}: \"{}\" is not a string", row.where(), key);
  return it->get_ref<const std::string&>();
}

void write_jsonl(const std::string& path, const std::vector<nlohmann::ordered_json>& rows) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  // Write to a temporary name first so an interrupted run never leaves half a dataset.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    check(bool(out), "cannot write {}", tmp);
    for (const nlohmann::ordered_json& row : rows) {
      out << row.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict) << '\n';
    }
    check(bool(out), "writing {} failed", tmp);
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace kvo
