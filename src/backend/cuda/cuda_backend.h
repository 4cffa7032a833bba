// The CUDA backend: bf16 activations and weights on one GPU, fp32 accumulation everywhere,
// cuBLAS GEMMs and own kernels (kernels.h, matvec.h, attention.h). Built only with
// KVOFFLOAD_CUDA (then KVO_HAVE_CUDA is defined); make_backend() in backend.cpp is the portable
// way in.
#pragma once
#include <cuda_runtime.h>

#include <memory>

#include "backend/backend.h"

namespace kvo {

// A backend on CUDA device 0, or nullptr when no GPU is visible.
std::unique_ptr<Backend> make_cuda_backend();

// The stream every op of `backend` is queued on, so code outside the backend (the KV policies'
// kernels) orders its work with the forward pass. nullptr when `backend` is not the CUDA backend.
cudaStream_t cuda_stream_of(const Backend& backend);

// Bytes per second a plain streaming reduction reads from a `bytes` device buffer (median of 5
// runs): the bandwidth yardstick of the decode roofline (kvoffload bench --roofline).
double cuda_read_bandwidth(Backend& backend, int64_t bytes);

}  // namespace kvo
