// RULER's needle tasks (niah_multikey_1 and niah_multivalue): "special magic numbers" hidden at
// random depths of the essay haystack, with RULER's prompt wording.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "eval/haystack.h"
#include "eval/rng.h"
#include "eval/tasks.h"
#include "util/error.h"

namespace kvo {
namespace {

using Words = std::vector<std::string>;
const Words kKeyAdjectives = {"abandoned", "brave",  "cheerful", "damp",   "eager",   "fragile",
                              "gentle",    "hollow", "icy",      "jolly",  "kind",    "lively",
                              "mellow",    "nimble", "obedient", "polite", "quaint",  "rusty",
                              "shiny",     "tender", "uneven",   "vivid",  "wicked",  "zealous",
                              "ancient",   "bitter", "crooked",  "dusty",  "elastic", "fuzzy"};
const Words kKeyNouns = {"bathrobe", "lantern", "pancake",  "compass",  "violin",  "glacier",
                         "teapot",   "saddle",  "meteor",   "harbor",   "walrus",  "quilt",
                         "anchor",   "cactus",  "dolphin",  "fortress", "goblet",  "hammock",
                         "igloo",    "jigsaw",  "kettle",   "ladder",   "mitten",  "notebook",
                         "orchard",  "pelican", "raincoat", "sandal",   "thimble", "umbrella"};

constexpr const char* kIntro =
    "Some special magic numbers are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the numbers afterwards.";

std::string needle(const std::string& key, const std::string& value) {
  return fmt::format("One of the special magic numbers for {} is: {}.", key, value);
}

struct Needle {
  std::string text;
  double depth;  // 0..1 position in the haystack
};

// Essay sentences from `start`, with the needles inserted at their depths as sentences of
// their own (RULER inserts at sentence boundaries too).
std::string needle_haystack(const Haystack& hay, size_t start, size_t units,
                            const std::vector<Needle>& needles) {
  std::vector<std::vector<std::string>> before(units + 1);
  for (const Needle& n : needles) {
    before[std::min(units, size_t(n.depth * double(units + 1)))].push_back(n.text);
  }
  std::string out;
  for (size_t i = 0; i <= units; ++i) {
    for (const std::string& t : before[i]) out += (out.empty() ? "" : " ") + t;
    if (i == units) break;
    const HaystackSentence& s = hay.sentences[(start + i) % hay.sentences.size()];
    if (!out.empty()) out += s.starts_paragraph ? "\n\n" : " ";
    out += s.text;
  }
  return out;
}

struct NeedleSample {
  std::vector<Needle> needles;
  std::string query;
  std::vector<std::string> answers;
};

nlohmann::ordered_json generate_needles(const TaskOptions& options, size_t index,
                                        const TokenCounter& count, bool multivalue) {
  Rng rng(sample_seed(options.seed, options.task, index));
  std::set<std::string> keys, values;
  auto fresh_key = [&] {
    for (;;) {
      std::string k = rng.pick(kKeyAdjectives) + "-" + rng.pick(kKeyNouns);
      if (keys.insert(k).second) return k;
    }
  };
  auto fresh_value = [&] {
    for (;;) {
      std::string v = std::to_string(rng.range(1000000, 9999999));
      if (values.insert(v).second) return v;
    }
  };
  NeedleSample s;
  s.query = fresh_key();
  // multikey: one needle per key, three distractor keys (RULER niah_multikey_1: 4 keys);
  // multivalue: four values under the same key.
  if (multivalue) {
    for (int i = 0; i < 4; ++i) {
      s.answers.push_back(fresh_value());
      s.needles.push_back({needle(s.query, s.answers.back()), rng.unit()});
    }
  } else {
    s.answers.push_back(fresh_value());
    s.needles.push_back({needle(s.query, s.answers.back()), rng.unit()});
    for (int i = 0; i < 3; ++i)
      s.needles.push_back({needle(fresh_key(), fresh_value()), rng.unit()});
  }
  const std::string question =
      multivalue ? fmt::format(
                       "What are all the special magic numbers for {} mentioned in the "
                       "provided text?",
                       s.query)
                 : fmt::format(
                       "What is the special magic number for {} mentioned in the "
                       "provided text?",
                       s.query);
  const Haystack& hay = load_haystack(options.haystack_dir);
  size_t start = rng.below(hay.sentences.size());
  while (!hay.sentences[start].starts_paragraph) start = (start + 1) % hay.sentences.size();
  auto build = [&](size_t units) {
    return std::string(kIntro) + "\n\n" + needle_haystack(hay, start, units, s.needles) + "\n\n" +
           question;
  };
  FitResult fit = fit_to_tokens(build, count, options.target_tokens, 28.0, hay.sentences.size() * 8,
                                fmt::format("{} sample {}", options.task, index));
  return task_row(options, index, fit, s.answers);
}

}  // namespace

nlohmann::ordered_json generate_niah_multikey(const TaskOptions& options, size_t index,
                                              const TokenCounter& count) {
  return generate_needles(options, index, count, false);
}

nlohmann::ordered_json generate_niah_multivalue(const TaskOptions& options, size_t index,
                                                const TokenCounter& count) {
  return generate_needles(options, index, count, true);
}

}  // namespace kvo
