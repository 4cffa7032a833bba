// Next-token sampling on host logits: greedy, temperature, top-k, top-p, seeded.
// The random stream is our own (mt19937_64 bits -> double) so a seed gives the same tokens on
// every platform and standard library.
#pragma once
#include <cstdint>
#include <random>
#include <span>

namespace kvo {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy (argmax, ties to the lowest id)
  int top_k = 0;             // 0 = no limit
  float top_p = 1.0f;        // nucleus mass; 1 = no limit
  uint64_t seed = 0;
};

// Throws kvo::Error for out-of-range values (negative temperature, top_p outside (0, 1], ...).
void validate(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  int32_t sample(std::span<const float> logits);
  // The draw sample() would use next (in [0, 1); 0 and no draw when greedy), for sampling the
  // same way on the device (Backend::sample).
  double next_uniform();
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

int32_t argmax(std::span<const float> logits);

}  // namespace kvo
