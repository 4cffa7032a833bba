#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#ifdef KVO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "util/error.h"

namespace kvo {

Tensor Tensor::row_range(int64_t first, int64_t count) const {
  Tensor t = *this;
  t.data = static_cast<char*>(data) + first * stride * static_cast<int64_t>(dtype_size(dtype));
  t.rows = count;
  return t;
}

Tensor Tensor::reshaped(int64_t new_rows, int64_t new_cols) const {
  if (!contiguous() || new_rows * new_cols != rows * cols) fail("internal: bad tensor reshape");
  return {data, dtype, new_rows, new_cols, new_cols};
}

DeviceArray::DeviceArray(Backend* backend, void* data, DType dtype, int64_t rows, int64_t cols)
    : backend_(backend), data_(data), dtype_(dtype), rows_(rows), cols_(cols) {}

DeviceArray::~DeviceArray() {
  if (backend_ && data_) backend_->free(data_);
}

DeviceArray::DeviceArray(DeviceArray&& other) noexcept {
  *this = std::move(other);
}

DeviceArray& DeviceArray::operator=(DeviceArray&& other) noexcept {
  if (this != &other) {
    if (backend_ && data_) backend_->free(data_);
    backend_ = other.backend_;
    data_ = other.data_;
    dtype_ = other.dtype_;
    rows_ = other.rows_;
    cols_ = other.cols_;
    other.data_ = nullptr;
  }
  return *this;
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads) {
  if (device == "cpu") return make_cpu_backend(threads);
  if (device == "cuda" || device == "auto") {
#ifdef KVO_HAVE_CUDA
    if (auto cuda = make_cuda_backend()) return cuda;
    if (device == "cuda") fail("--device cuda: no CUDA GPU is available");
#else
    if (device == "cuda") fail("--device cuda: this build has no CUDA backend");
#endif
    return make_cpu_backend(threads);  // auto without a GPU
  }
  fail("unknown device '{}' (expected cpu, cuda or auto)", device);
}

}  // namespace kvo
