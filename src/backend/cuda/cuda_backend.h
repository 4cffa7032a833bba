// The CUDA backend: bf16 activations and weights on one GPU, fp32 accumulation everywhere,
// cuBLAS GEMMs and own kernels (kernels.h, attention.h). Built only with KVOFFLOAD_CUDA (then
// KVO_HAVE_CUDA is defined); make_backend() in backend.cpp is the portable way in.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace kvo {

// A backend on CUDA device 0, or nullptr when no GPU is visible.
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace kvo
