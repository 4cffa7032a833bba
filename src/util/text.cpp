#include "util/text.h"

#include <fmt/format.h>

#include "util/error.h"

namespace kvo {

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(" \t") - b + 1));
}

std::string unwrap_parens(std::string_view s) {
  const std::string t = trim(s);
  if (t.size() >= 2 && t.front() == '(' && t.back() == ')') return trim(t.substr(1, t.size() - 2));
  return t;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.emplace_back(s.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

std::vector<std::string> split_top_level(std::string_view s, char sep, std::string_view what) {
  std::vector<std::string> out(1);
  int depth = 0;
  for (char c : s) {
    if (c == '(') ++depth;
    if (c == ')' && --depth < 0) fail("unbalanced ')' in {}", what);
    if (c == sep && depth == 0)
      out.emplace_back();
    else
      out.back() += c;
  }
  check(depth == 0, "unbalanced '(' in {}", what);
  return out;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (bytes >= 1024 && u < 3) bytes /= 1024, ++u;
  return fmt::format("{:.4g} {}", bytes, units[u]);
}

}  // namespace kvo
