// Randomized-mutation fuzzing for the tests of every parser (binary files in io/, spec strings,
// model outputs): the iteration count and seed, a text mutator, and the loop that requires each
// input to be accepted or rejected with kvo::Error (any other exception fails the test; a crash
// or an out-of-bounds read, visible under ASan, ends it).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "util/error.h"

namespace kvo::test {

// CI runs 2000 mutations per parser; KVO_FUZZ_ITERATIONS and KVO_FUZZ_SEED allow longer local
// runs (e.g. under ASan) without editing the tests.
inline int fuzz_iterations() {
  const char* env = std::getenv("KVO_FUZZ_ITERATIONS");
  return env ? std::max(1, std::atoi(env)) : 2000;
}
inline uint64_t fuzz_seed_or(uint64_t fallback) {
  const char* env = std::getenv("KVO_FUZZ_SEED");
  return env ? std::strtoull(env, nullptr, 10) : fallback;
}

// One edit of a text: a span erased, a token of `tokens` (the grammar's words, and numbers at
// the edges of their ranges) inserted or written over a span, a span duplicated, or a byte
// changed.
inline std::string mutate_text(const std::string& in, const std::vector<std::string>& tokens,
                               std::mt19937_64& rng) {
  std::string s = in;
  const auto pick = [&](size_t n) { return n == 0 ? size_t(0) : size_t(rng() % n); };
  const size_t at = pick(s.size() + 1), len = 1 + pick(8);
  switch (rng() % 5) {
    case 0:
      s.erase(at, len);
      break;
    case 1:
      s.insert(at, tokens[pick(tokens.size())]);
      break;
    case 2:
      s.replace(at, len, tokens[pick(tokens.size())]);
      break;
    case 3:
      s.insert(at, s.substr(pick(s.size() + 1), len));
      break;
    default:
      if (!s.empty()) s[pick(s.size())] = char(rng());
      break;
  }
  return s;
}

// Calls exercise(input) on fuzz_iterations() inputs, each one or two mutations of a seed from
// `seeds` made by `mutate`; counts accepted and rejected (kvo::Error) inputs.
template <typename Input, typename Mutate, typename Exercise>
void fuzz_inputs(const std::vector<Input>& seeds, uint64_t seed, Mutate&& mutate,
                 Exercise&& exercise, int* accepted, int* rejected) {
  std::mt19937_64 rng(seed);
  for (int i = 0, n = fuzz_iterations(); i < n; ++i) {
    Input input = mutate(seeds[rng() % seeds.size()], rng);
    if (rng() % 4 == 0) input = mutate(input, rng);  // stack a second mutation sometimes
    try {
      exercise(input);
      ++*accepted;
    } catch (const Error&) {
      ++*rejected;
    } catch (const std::exception& e) {
      FAIL() << "mutation " << i << " raised a non-kvo exception: " << e.what();
    }
  }
}

// fuzz_inputs over texts, each mutation one mutate_text with `tokens`.
template <typename Exercise>
void fuzz_texts(const std::vector<std::string>& seeds, const std::vector<std::string>& tokens,
                uint64_t seed, Exercise&& exercise, int* accepted, int* rejected) {
  fuzz_inputs(
      seeds, seed,
      [&](const std::string& s, std::mt19937_64& rng) { return mutate_text(s, tokens, rng); },
      exercise, accepted, rejected);
}

}  // namespace kvo::test
