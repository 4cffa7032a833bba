// RULER's frequent-word extraction (fwe): coded words drawn from a Zipf distribution
// (alpha 2), separated by " .... "; the answer is the three most frequent words.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "eval/rng.h"
#include "eval/tasks.h"
#include "util/error.h"

namespace kvo {
namespace {

constexpr double kAlpha = 2.0;
constexpr size_t kVocab = 2000;
constexpr size_t kTop = 3;

}  // namespace

nlohmann::ordered_json generate_frequent_words(const TaskOptions& options, size_t index,
                                               const TokenCounter& count) {
  for (uint64_t attempt = 0;; ++attempt) {
    Rng rng(sample_seed(options.seed + attempt * 0x9e37, options.task, index));
    std::vector<std::string> vocab;
    std::set<std::string> taken;
    while (vocab.size() < kVocab) {
      std::string w;
      for (int i = 0; i < 5; ++i) w += char('a' + rng.below(26));
      if (taken.insert(w).second) vocab.push_back(w);
    }
    // Inverse-CDF sampling of ranks 1..kVocab with P(r) ~ r^-alpha (own code: std
    // distributions differ between standard libraries).
    std::vector<double> cdf(kVocab);
    double total = 0;
    for (size_t r = 0; r < kVocab; ++r) cdf[r] = (total += std::pow(double(r + 1), -kAlpha));
    std::vector<size_t> stream;  // grows lazily; build(k) uses its first k draws
    auto draw = [&](size_t k) {
      while (stream.size() < k) {
        const double u = rng.unit() * total;
        stream.push_back(size_t(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin()));
      }
    };
    auto build = [&](size_t units) {
      draw(units);
      std::string out =
          "Read the following coded text and track the frequency of each coded word. Find the "
          "three most frequently appeared coded words. ";
      for (size_t i = 0; i < units; ++i) {
        if (i > 0) out += " .... ";
        out += vocab[std::min(stream[i], kVocab - 1)];
      }
      return out +
             "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are "
             "the three most frequently appeared words in the above coded text?";
    };
    FitResult fit = fit_to_tokens(build, count, options.target_tokens, 4.5, 1u << 22,
                                  fmt::format("{} sample {}", options.task, index));
    std::map<size_t, size_t> freq;
    for (size_t i = 0; i < fit.units; ++i) freq[std::min(stream[i], kVocab - 1)]++;
    std::vector<std::pair<size_t, size_t>> by_count;  // (count, rank)
    for (auto [rank, c] : freq) by_count.push_back({c, rank});
    std::sort(by_count.rbegin(), by_count.rend());
    // The answer must be unambiguous: the third word strictly above the fourth.
    if (by_count.size() > kTop && by_count[kTop - 1].first <= by_count[kTop].first) {
      check(attempt < 20, "{} sample {}: no unambiguous top-3 after 20 draws", options.task, index);
      continue;
    }
    std::vector<std::string> answers;
    for (size_t i = 0; i < kTop && i < by_count.size(); ++i) {
      answers.push_back(vocab[by_count[i].second]);
    }
    return task_row(options, index, fit, answers);
  }
}

}  // namespace kvo
