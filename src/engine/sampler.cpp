#include "engine/sampler.h"

#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

namespace kvo {

void validate(const SamplingParams& p) {
  check(p.temperature >= 0.0f && std::isfinite(p.temperature),
        "--temperature must be >= 0 (got {})", p.temperature);
  check(p.top_k >= 0, "--top-k must be >= 0 (got {})", p.top_k);
  check(p.top_p > 0.0f && p.top_p <= 1.0f, "--top-p must be in (0, 1] (got {})", p.top_p);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  validate(params);
}

double Sampler::next_uniform() {
  if (params_.temperature == 0.0f) return 0.0;
  return double(rng_() >> 11) * 0x1.0p-53;
}

int32_t argmax(std::span<const float> logits) {
  return cpu_sample_token(logits, 0.0f, 0, 1.0f, 0.0);
}

int32_t Sampler::sample(std::span<const float> logits) {
  return cpu_sample_token(logits, params_.temperature, params_.top_k, params_.top_p,
                          next_uniform());
}

}  // namespace kvo
