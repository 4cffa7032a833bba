// Whether this build and machine can run the CUDA quantization kernels (src/quant/cuda).
#pragma once
#include <string>

namespace kvo::quant {

// False with the reason in *why when the build has no CUDA or no device is visible.
bool cuda_device_available(std::string* why = nullptr);

// Throw kvo::Error "CUDA error in <what>: <message>" and kvo::Error(message): .cu files cannot
// include fmt (util/error.h), so their checks go through these.
[[noreturn]] void throw_cuda_error(const std::string& what, const std::string& message);
[[noreturn]] void throw_error(const std::string& message);

}  // namespace kvo::quant
