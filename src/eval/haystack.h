// Filler text for long prompts: the Paul Graham essays in ../shared/data/haystack, cleaned of
// headers, footnote markers and notes, and cut into sentences grouped in paragraphs.
#pragma once
#include <string>
#include <vector>

namespace kvo {

struct HaystackSentence {
  std::string text;
  bool starts_paragraph = false;
};

struct Haystack {
  std::vector<HaystackSentence> sentences;  // every essay in file-name order, cyclic

  // Paragraphs built from `count` sentences starting at sentence `start` (wrapping around).
  std::vector<std::string> paragraphs(size_t start, size_t count) const;
};

// `override_dir` when not empty, else the first of: <source>/../shared/data/haystack/
// paul-graham-essays (compiled in), the same path beside the running binary's checkout, and
// ../shared/... relative to the working directory.
std::string find_haystack_dir(const std::string& override_dir);

// Loads and caches (per directory) the essays of `dir` (*.txt).
const Haystack& load_haystack(const std::string& dir);

// Cleans one essay's raw text into sentences (exposed for tests).
std::vector<HaystackSentence> split_essay(const std::string& raw);

}  // namespace kvo
