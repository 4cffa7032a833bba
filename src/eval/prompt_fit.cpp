#include "eval/prompt_fit.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "util/error.h"

namespace kvo {

FitResult fit_to_tokens(const std::function<std::string(size_t)>& build, const TokenCounter& count,
                        int64_t target, double tokens_per_unit_hint, size_t max_units,
                        std::string_view what) {
  check(target > 0, "{}: the target length must be positive", what);
  const double tolerance = kPromptLengthTolerance * double(target);
  const double aim = std::max(2.0, 0.005 * double(target));

  FitResult best;
  auto evaluate = [&](size_t k) {
    FitResult r;
    r.units = k;
    r.text = build(k);
    r.tokens = count(r.text);
    if (best.text.empty() || std::llabs(r.tokens - target) < std::llabs(best.tokens - target)) {
      best = r;
    }
    return r.tokens;
  };

  const int64_t t0 = evaluate(0);
  check(double(t0) <= double(target) + tolerance,
        "{}: the content alone takes {} tokens, more than the target {} (+5%); ask for fewer "
        "records or a longer prompt",
        what, t0, target);
  // Secant steps inside a shrinking bracket [lo, hi]: token counts grow almost linearly with
  // the unit count, so this converges in a handful of full encodes.
  size_t lo = 0;
  int64_t t_lo = t0;
  std::optional<std::pair<size_t, int64_t>> hi;
  double slope = std::max(0.1, tokens_per_unit_hint);
  size_t k = 0;
  for (int iter = 0; iter < 40 && std::fabs(double(best.tokens - target)) > aim; ++iter) {
    double next;
    if (hi) {
      if (hi->first - lo <= 1) break;
      const double frac = double(target - t_lo) / double(std::max<int64_t>(1, hi->second - t_lo));
      next = double(lo) + frac * double(hi->first - lo);
      next = std::clamp(std::round(next), double(lo + 1), double(hi->first - 1));
    } else {
      if (lo >= max_units) break;
      next = double(lo) + std::max(1.0, std::round(double(target - t_lo) / slope));
      next = std::min(next, double(max_units));
    }
    k = size_t(next);
    const int64_t t = evaluate(k);
    if (t <= target) {
      if (k > lo && t > t_lo) slope = double(t - t_lo) / double(k - lo);
      lo = k;
      t_lo = t;
    } else {
      hi = {k, t};
    }
  }
  check(std::fabs(double(best.tokens - target)) <= tolerance,
        "{}: could not fit the prompt to {} tokens (closest: {})", what, target, best.tokens);
  return best;
}

int64_t parse_token_count(const std::string& text, std::string_view flag) {
  std::string digits = text;
  int64_t scale = 1;
  if (!digits.empty() && (digits.back() == 'k' || digits.back() == 'K')) {
    digits.pop_back();
    scale = 1024;
  }
  check(!digits.empty() && digits.size() < 10 &&
            digits.find_first_not_of("0123456789") == std::string::npos,
        "{} {}: expected a token count like 8192 or 8K", flag, text);
  return std::stoll(digits) * scale;
}

}  // namespace kvo
