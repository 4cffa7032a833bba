// RULER's variable tracking (vt, one chain of four hops): "VAR X = 12345" followed by
// "VAR Y = VAR X" ... hidden in repeated noise; the answer is every variable in the chain.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "eval/rng.h"
#include "eval/tasks.h"

namespace kvo {
namespace {

constexpr int kHops = 4;
constexpr const char* kNoise =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

}  // namespace

nlohmann::ordered_json generate_variable_tracking(const TaskOptions& options, size_t index,
                                                  const TokenCounter& count) {
  Rng rng(sample_seed(options.seed, options.task, index));
  std::set<std::string> taken;
  auto fresh_var = [&] {
    for (;;) {
      std::string v;
      for (int i = 0; i < 5; ++i) v += char('A' + rng.below(26));
      if (taken.insert(v).second) return v;
    }
  };
  const std::string value = std::to_string(rng.range(10000, 99999));
  std::vector<std::string> vars;
  std::vector<std::string> statements;
  for (int h = 0; h <= kHops; ++h) {
    vars.push_back(fresh_var());
    statements.push_back(h == 0 ? fmt::format("VAR {} = {}.", vars[0], value)
                                : fmt::format("VAR {} = VAR {}.", vars[h], vars[h - 1]));
  }
  // Depths in increasing order so each assignment comes after the one it copies.
  std::vector<double> depths;
  for (size_t i = 0; i < statements.size(); ++i) depths.push_back(rng.unit());
  std::sort(depths.begin(), depths.end());

  auto build = [&](size_t units) {
    std::string out =
        "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n";
    size_t next = 0;
    for (size_t i = 0; i <= units; ++i) {
      while (next < statements.size() &&
             std::min(units, size_t(depths[next] * double(units + 1))) == i) {
        out += statements[next++] + " ";
      }
      if (i < units) out += std::string(kNoise) + "\n";
    }
    return out + fmt::format(
                     "\nQuestion: Find all variables that are assigned the value {} in "
                     "the text above.",
                     value);
  };
  FitResult fit = fit_to_tokens(build, count, options.target_tokens, 22.0, 1u << 20,
                                fmt::format("{} sample {}", options.task, index));
  return task_row(options, index, fit, vars);
}

}  // namespace kvo
