#include "model/random_weights.h"

#include <cmath>
#include <cstring>
#include <memory>

namespace kvo {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint16_t to_bf16(float f) {  // round to nearest even; never NaN here
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : seed_(seed) {}

  // Uniform in [-sqrt(3) std, sqrt(3) std): standard deviation `std`.
  HostTensor uniform(std::vector<int64_t> shape, double std) {
    const uint64_t stream = mix(seed_ ^ mix(++tensors_));
    const float half_width = float(std::sqrt(3.0) * std);
    return fill(std::move(shape), [=](int64_t i) {
      const float u = float(mix(stream + uint64_t(i)) >> 40) * 0x1.0p-24f;
      return to_bf16((2.0f * u - 1.0f) * half_width);
    });
  }
  HostTensor ones(std::vector<int64_t> shape) {
    return fill(std::move(shape), [](int64_t) { return to_bf16(1.0f); });
  }

 private:
  template <typename F>
  HostTensor fill(std::vector<int64_t> shape, F value) {
    HostTensor t;
    t.dtype = DType::BF16;
    t.shape = std::move(shape);
    const int64_t n = t.numel();
    std::shared_ptr<uint16_t[]> data(new uint16_t[size_t(n)]);  // left uninitialized: filled below
    uint16_t* p = data.get();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) p[i] = value(i);
    t.data = p;
    t.owner = std::move(data);
    return t;
  }

  uint64_t seed_;
  uint64_t tensors_ = 0;
};

}  // namespace

Weights random_weights(const ModelConfig& c, uint64_t seed) {
  c.validate();
  Generator g(seed);
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  const int64_t q_dim = int64_t(c.num_heads) * c.head_dim;
  const int64_t kv_dim = int64_t(c.num_kv_heads) * c.head_dim;
  const double bias_std = 0.02;
  auto matrix = [&](int64_t out, int64_t in) {
    return g.uniform({out, in}, 1.0 / std::sqrt(double(in)));
  };
  Weights w;
  w.token_embedding = matrix(c.vocab_size, hidden);
  w.final_norm = g.ones({hidden});
  w.lm_head = c.tie_word_embeddings ? w.token_embedding : matrix(c.vocab_size, hidden);
  for (int l = 0; l < c.num_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = g.ones({hidden});
    lw.wq = matrix(q_dim, hidden);
    lw.wk = matrix(kv_dim, hidden);
    lw.wv = matrix(kv_dim, hidden);
    lw.wo = matrix(hidden, q_dim);
    if (c.qkv_bias) {
      lw.bq = g.uniform({q_dim}, bias_std);
      lw.bk = g.uniform({kv_dim}, bias_std);
      lw.bv = g.uniform({kv_dim}, bias_std);
    }
    if (c.o_bias) lw.bo = g.uniform({hidden}, bias_std);
    if (c.qk_norm) {
      lw.q_norm = g.ones({c.head_dim});
      lw.k_norm = g.ones({c.head_dim});
    }
    lw.ffn_norm = g.ones({hidden});
    lw.w_gate = matrix(inter, hidden);
    lw.w_up = matrix(inter, hidden);
    lw.w_down = matrix(hidden, inter);
    w.layers.push_back(std::move(lw));
  }
  return w;
}

LoadedModel load_random_model(const std::string& config_path, uint64_t seed) {
  LoadedModel m;
  m.config = load_hf_config_file(config_path);
  m.weights = random_weights(m.config, seed);
  m.source_format = "random";
  return m;
}

}  // namespace kvo
