// Reading one transformer layer's tensors, written once for every checkpoint format: a format
// supplies its tensor names and a getter that checks each tensor's shape.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "model/weights.h"

namespace kvo {

// Names of a layer's tensors after the layer prefix (e.g. "self_attn.q_proj.weight").
struct LayerTensorNames {
  const char *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo, *q_norm, *k_norm;
  const char *ffn_norm, *w_gate, *w_up, *w_down;
};

// Returns the tensor `name`, raising kvo::Error when it is missing or its shape differs.
using TensorGetter =
    std::function<HostTensor(const std::string& name, const std::vector<int64_t>& shape)>;

// Reads the weights of one layer; optional tensors (biases, q/k norms) per the config.
LayerWeights read_layer_weights(const ModelConfig& c, const LayerTensorNames& names,
                                const std::string& prefix, const TensorGetter& get);

}  // namespace kvo
