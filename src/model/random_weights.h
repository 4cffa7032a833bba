// A model of any supported architecture with random weights, from an HF config.json alone: speed
// work at real sizes without the checkpoint (--random-weights CONFIG on bench and info).
//
// Weights are drawn in bf16 (the CUDA backend's dtype: uploaded without conversion), uniform with
// standard deviation 1/sqrt(fan_in) for every matrix (the embedding too, 1/sqrt(hidden)), so each
// projection of an RMS-normalized input has O(1) outputs and the residual stream grows only like
// the square root of the layer count: activations stay finite through any depth. Norm weights are
// 1, biases small. Each element is a hash of (seed, tensor, index), so the weights do not depend
// on the thread count, and all cores fill them in parallel (an 8B model in seconds).
#pragma once
#include <cstdint>
#include <string>

#include "model/weights.h"

namespace kvo {

Weights random_weights(const ModelConfig& config, uint64_t seed = 0);

// The config of `config_path` (a config.json or a folder holding one) with random_weights.
LoadedModel load_random_model(const std::string& config_path, uint64_t seed = 0);

}  // namespace kvo
