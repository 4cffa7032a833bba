#include "model/rope.h"

#include <cmath>

#include "util/error.h"

namespace kvo {

RopeParams make_rope_params(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  RopeParams rope;
  rope.adjacent_pairs = c.rope_layout == RopeLayout::AdjacentPairs;
  rope.inv_freq.resize(half);
  for (int i = 0; i < half; ++i) {
    float exponent = float(2 * i) / float(c.head_dim);
    rope.inv_freq[i] = 1.0f / std::pow(c.rope_theta, exponent);
  }
  if (c.rope_scaling.type == RopeScaling::Type::Llama3) {
    // Llama 3.1: keep high frequencies, divide low ones by `factor`, blend in between.
    const auto& s = c.rope_scaling;
    const float low_wavelen = float(s.original_max_position) / s.low_freq_factor;
    const float high_wavelen = float(s.original_max_position) / s.high_freq_factor;
    for (float& f : rope.inv_freq) {
      const float wavelen = 2.0f * float(M_PI) / f;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_wavelen) {
        const float smooth = (float(s.original_max_position) / wavelen - s.low_freq_factor) /
                             (s.high_freq_factor - s.low_freq_factor);
        f = (1.0f - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  if (!c.rope_freq_factors.empty()) {
    check(int(c.rope_freq_factors.size()) == half,
          "rope_freqs has {} entries, expected head_dim/2 = {}", c.rope_freq_factors.size(), half);
    for (int i = 0; i < half; ++i) rope.inv_freq[i] /= c.rope_freq_factors[i];
  }
  return rope;
}

}  // namespace kvo
