// Fitting generated prompts to a token budget. Generators describe a prompt as a function of
// one "unit" count (filler sentences, list items, JSON pairs); the fit searches that count
// until the prompt, encoded whole by the real tokenizer, lands near the target.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kvo {

// Number of tokens of a text (the tokenizer of the model the set is made for).
using TokenCounter = std::function<int64_t(std::string_view)>;

// A prompt must land within this fraction of the target length.
constexpr double kPromptLengthTolerance = 0.05;

struct FitResult {
  size_t units = 0;
  int64_t tokens = 0;
  std::string text;
};

// Finds the unit count whose prompt is closest to `target` tokens (aiming within 0.5%; at most
// a few dozen full encodes). `build(k)` must be deterministic in k and grow with k. Throws
// kvo::Error, naming `what`, when even zero units overshoot the target by more than the
// tolerance or the best fit misses it by more than the tolerance.
FitResult fit_to_tokens(const std::function<std::string(size_t)>& build, const TokenCounter& count,
                        int64_t target, double tokens_per_unit_hint, size_t max_units,
                        std::string_view what);

// Parses a token count flag: "8192", "8K" or "8k" (x1024). kvo::Error names `flag`.
int64_t parse_token_count(const std::string& text, std::string_view flag);

}  // namespace kvo
