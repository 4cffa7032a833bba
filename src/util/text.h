// Small string helpers shared by the spec parsers (quant/spec.cpp, kv/kv_spec.cpp), the eval
// harness and the CLI.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace kvo {

// s without the spaces and tabs at either end.
std::string trim(std::string_view s);
// trim(s), and when that is wrapped in one pair of parentheses, its trimmed inside.
std::string unwrap_parens(std::string_view s);
// Every piece between the separators, empty ones included: split("a,,b", ',') = {a, "", b}.
std::vector<std::string> split(std::string_view s, char sep);
// split() at the separators outside parentheses. kvo::Error "unbalanced ')' in WHAT" (or '(')
// when they do not pair up.
std::vector<std::string> split_top_level(std::string_view s, char sep, std::string_view what);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
// "512 B", "1.5 KiB", "16 GiB": 4 significant digits in the largest unit below 1024 of it.
std::string human_bytes(double bytes);

}  // namespace kvo
