// Seeded N(0, 1) test inputs shared by the backend op tests.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace kvo::testing {

inline std::vector<float> random_values(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace kvo::testing
