#include "eval/string_match.h"

namespace kvo {

double string_match_all(const std::vector<std::string>& references, std::string_view output) {
  if (references.empty()) return 0.0;
  size_t found = 0;
  for (const std::string& r : references) {
    if (output.find(r) != std::string_view::npos) ++found;
  }
  return double(found) / double(references.size());
}

}  // namespace kvo
