// RULER's string_match_all: the fraction of reference strings that occur in the output. Unlike
// RULER (which lowercases both sides) the match is case-sensitive: our references are numbers,
// UUIDs, upper-case variable names and lower-case coded words, where case is part of the answer.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace kvo {

// 0 for an empty reference list.
double string_match_all(const std::vector<std::string>& references, std::string_view output);

}  // namespace kvo
