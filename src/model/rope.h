// RoPE frequencies for a model: the base schedule theta^(-2i/d), Llama 3 scaling, and GGUF
// per-pair frequency factors; computed once per model, in fp32 like the HF reference.
#pragma once
#include "backend/backend.h"
#include "model/config.h"

namespace kvo {

RopeParams make_rope_params(const ModelConfig& config);

}  // namespace kvo
