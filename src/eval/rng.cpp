#include "eval/rng.h"

#include <algorithm>

namespace kvo {

uint64_t mix_seed(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t sample_seed(uint64_t seed, std::string_view stream, uint64_t index) {
  // FNV-1a of the stream name keeps streams apart even for equal seeds and indices.
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : stream) h = (h ^ c) * 0x100000001b3ull;
  return mix_seed(mix_seed(seed) ^ mix_seed(h) ^ mix_seed(index + 0x51ed27ull));
}

uint64_t Rng::below(uint64_t n) {
  // Reject the top partial block of 2^64 so every residue is equally likely.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = next();
  while (x >= limit);
  return x % n;
}

std::vector<size_t> Rng::sample_indices(size_t n, size_t k) {
  std::vector<size_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = i;
  // Partial Fisher-Yates: only the first k slots are needed.
  for (size_t i = 0; i < k && i < n; ++i) std::swap(all[i], all[i + below(n - i)]);
  all.resize(std::min(k, n));
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace kvo
