#include "backend/backend.h"

#include <algorithm>

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

namespace {

// x, or rmsnorm(x) with `norm` in `scratch` (allocated here) when there is one.
Tensor normed_input(Backend& b, const Tensor& x, const InputNorm* norm, DeviceArray& scratch) {
  if (!norm) return x;
  scratch = b.alloc(x.rows, x.cols);
  b.rmsnorm(x, norm->weight, norm->eps, scratch.tensor());
  return scratch.tensor();
}

// Reads at queue(): for backends whose queued work has already run.
class ImmediateReadback final : public IntsReadback {
 public:
  ImmediateReadback(Backend& backend, int64_t n) : backend_(backend), n_(n) {}
  void queue(const Tensor& src) override {
    check(src.rows == n_, "internal: ints_readback of {} ints given {}", n_, src.rows);
    values_ = backend_.read_ints(src);
  }
  std::vector<int32_t> wait() override { return std::move(values_); }

 private:
  Backend& backend_;
  int64_t n_;
  std::vector<int32_t> values_;
};

}  // namespace

void Backend::matmul_many(const Tensor& x, const InputNorm* norm, std::span<const Tensor> ws,
                          std::span<const Tensor* const> biases, std::span<const Tensor> outs) {
  DeviceArray scratch;
  const Tensor in = normed_input(*this, x, norm, scratch);
  for (size_t i = 0; i < ws.size(); ++i) matmul(in, ws[i], biases[i], outs[i]);
}

void Backend::matmul_add(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out) {
  DeviceArray scratch = alloc(out.rows, out.cols);
  matmul(x, w, bias, scratch.tensor());
  add(out, scratch.tensor());
}

void Backend::matmul_swiglu(const Tensor& x, const InputNorm* norm, const Tensor& w,
                            const Tensor& out) {
  check(w.rows % 2 == 0 && out.rows == x.rows && out.cols == w.rows / 2,
        "internal: matmul_swiglu shapes ({}x{}) * ({}x{})^T -> ({}x{})", x.rows, x.cols, w.rows,
        w.cols, out.rows, out.cols);
  DeviceArray normed, scratch = alloc(x.rows, w.rows);
  const Tensor gate_up = scratch.tensor();
  matmul(normed_input(*this, x, norm, normed), w, nullptr, gate_up);
  // Column halves of gate_up: (n, features) each, rows 2 * features apart.
  Tensor gate = gate_up, up = gate_up;
  gate.cols = up.cols = out.cols;
  up.data = static_cast<char*>(up.data) + out.cols * int64_t(dtype_size(gate_up.dtype));
  swiglu(gate, up, out);
}

void Backend::rope_store_at(const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& positions, int head_dim, const RopeParams& rope,
                            const Tensor& keys, const Tensor& values) {
  check(k.rows == q.rows && v.rows == q.rows && positions.rows == q.rows && k.cols == keys.cols &&
            v.cols == values.cols,
        "internal: rope_store_at shapes (q {}x{}, k {}x{}, v {}x{}, {} positions, cache {} / {} "
        "columns)",
        q.rows, q.cols, k.rows, k.cols, v.rows, v.cols, positions.rows, keys.cols, values.cols);
  rope_at(q, positions, head_dim, rope);
  rope_at(k, positions, head_dim, rope);
  for (int64_t t = 0; t < k.rows; ++t) {
    copy_rows_at(k.row_range(t, 1), keys, positions.row_range(t, 1));
    copy_rows_at(v.row_range(t, 1), values, positions.row_range(t, 1));
  }
}

std::unique_ptr<IntsReadback> Backend::ints_readback(int64_t n) {
  return std::make_unique<ImmediateReadback>(*this, n);
}

void Backend::rope_store_attention_batch_at(const Tensor& q, const Tensor& k, const Tensor& v,
                                            const Tensor& positions, int head_dim,
                                            const RopeParams& rope, std::span<const Tensor> keys,
                                            std::span<const Tensor> values,
                                            const AttentionShape& shape, const Tensor& out) {
  check(int64_t(keys.size()) == q.rows && int64_t(values.size()) == q.rows,
        "internal: rope_store_attention_batch_at needs one key and value table per row");
  check(shape.q_len == 1, "internal: rope_store_attention_batch_at attends one row per sequence");
  for (int64_t b = 0; b < q.rows; ++b) {
    const Tensor at = positions.row_range(b, 1);
    rope_store_at(q.row_range(b, 1), k.row_range(b, 1), v.row_range(b, 1), at, head_dim, rope,
                  keys[b], values[b]);
    AttentionShape one = shape;
    one.kv_len = std::min(shape.kv_len, keys[b].rows);
    attention_at(q.row_range(b, 1), keys[b], values[b], one, at, out.row_range(b, 1));
  }
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
