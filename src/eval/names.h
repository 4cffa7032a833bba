// Fictional names for generated datasets, built from syllable and word tables with a seeded
// Rng, so that no model can answer from memorized facts and every name is new per sample.
#pragma once
#include <set>
#include <string>

#include "eval/rng.h"

namespace kvo {

struct PersonName {
  std::string first, last;
  bool female = false;
  std::string full() const { return first + " " + last; }
};

// Hands out names that are unique within one sample (targets and distractors alike), so a
// distractor never shares a name with a record the gold answer expects.
class NameBank {
 public:
  explicit NameBank(Rng& rng) : rng_(rng) {}

  std::string word(int syllables = 0);  // capitalized pseudo-word; 0 = random 2..3 syllables
  PersonName person();
  std::string city();
  std::string company();
  std::string product();
  std::string title();  // films, books, shows; sometimes with a U+2019 possessive
  std::string hospital();
  std::string medical_school();
  std::string studio();
  std::string store();
  std::string drug();
  std::string journal();

  // Registers a name as taken; false when it already was.
  bool claim(const std::string& name) { return taken_.insert(name).second; }

 private:
  template <typename F>
  std::string unique(F make);

  Rng& rng_;
  std::set<std::string> taken_;
};

}  // namespace kvo
