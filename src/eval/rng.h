// Seeded randomness for the dataset generators. The std:: distributions are implemented
// differently by libstdc++ and libc++, so the same seed would give different datasets on
// different toolchains; everything here is derived from raw mt19937_64 output, whose sequence
// the standard fixes.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvo {

// Mixes a 64-bit value (splitmix64 finalizer); used to derive independent per-sample seeds.
uint64_t mix_seed(uint64_t x);
// Seed for sample `index` of a dataset stream named `stream` (a task or domain name), so that
// sample i does not depend on how many samples are generated or in which order.
uint64_t sample_seed(uint64_t seed, std::string_view stream, uint64_t index);

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}

  uint64_t next() { return gen_(); }
  // Uniform in [0, n) without modulo bias (rejection sampling); n > 0.
  uint64_t below(uint64_t n);
  // Uniform integer in [lo, hi] (inclusive).
  int64_t range(int64_t lo, int64_t hi) { return lo + int64_t(below(uint64_t(hi - lo) + 1)); }
  // Uniform double in [0, 1) from the top 53 bits.
  double unit() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
  bool chance(double p) { return unit() < p; }

  template <typename T>
  const T& pick(const std::vector<T>& items) {
    return items[below(items.size())];
  }
  template <typename T>
  void shuffle(std::vector<T>& items) {
    for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[below(i)]);
  }
  // k distinct indices from [0, n), in increasing order.
  std::vector<size_t> sample_indices(size_t n, size_t k);

 private:
  std::mt19937_64 gen_;
};

}  // namespace kvo
