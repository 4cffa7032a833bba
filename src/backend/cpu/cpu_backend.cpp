#include "backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "util/error.h"

namespace kvo {
namespace {

float* f32(const Tensor& t) {
  if (t.dtype != DType::F32) fail("internal: CPU backend expects F32 tensors");
  return static_cast<float*>(t.data);
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  if (a.rows != b.rows || a.cols != b.cols)
    fail("internal: {} shape mismatch ({}x{} vs {}x{})", op, a.rows, a.cols, b.rows, b.cols);
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) {
    if (threads > 0) omp_set_num_threads(threads);
  }
  std::string name() const override { return "cpu"; }

  DeviceArray alloc(int64_t rows, int64_t cols) override {
    size_t bytes = static_cast<size_t>(rows * cols) * sizeof(float);
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!p) throw std::bad_alloc();
    return DeviceArray(this, p, DType::F32, rows, cols);
  }

  DeviceArray upload(const HostTensor& host) override {
    int64_t cols = host.shape.empty() ? 1 : host.shape.back();
    int64_t rows = cols ? host.numel() / cols : 0;
    DeviceArray out = alloc(rows, cols);
    float* dst = f32(out.tensor());
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) host.to_f32(dst + r * cols, r * cols, cols);
    return out;
  }

  void free(void* data) override {
    std::free(data);
  }

  std::vector<float> download(const Tensor& src) override {
    std::vector<float> out(static_cast<size_t>(src.rows * src.cols));
    for (int64_t r = 0; r < src.rows; ++r)
      std::memcpy(out.data() + r * src.cols, f32(src) + r * src.stride, src.cols * sizeof(float));
    return out;
  }

  void copy(const Tensor& src, const Tensor& dst) override {
    check_same_shape(src, dst, "copy");
    for (int64_t r = 0; r < src.rows; ++r)
      std::memcpy(f32(dst) + r * dst.stride, f32(src) + r * src.stride, src.cols * sizeof(float));
  }

  void embedding(std::span<const int32_t> ids, const Tensor& table, const Tensor& out) override {
    for (size_t t = 0; t < ids.size(); ++t) {
      if (ids[t] < 0 || ids[t] >= table.rows)
        fail("token id {} is outside the vocabulary (0..{})", ids[t], table.rows - 1);
      std::memcpy(f32(out) + t * out.stride, f32(table) + ids[t] * table.stride,
                  table.cols * sizeof(float));
    }
  }

  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override {
    check_same_shape(x, out, "rmsnorm");
    const float* w = f32(weight);
#pragma omp parallel for schedule(static) if (x.rows > 16)
    for (int64_t r = 0; r < x.rows; ++r) {
      const float* xr = f32(x) + r * x.stride;
      float* yr = f32(out) + r * out.stride;
      double sum = 0;
      for (int64_t i = 0; i < x.cols; ++i) sum += double(xr[i]) * xr[i];
      float inv = 1.0f / std::sqrt(float(sum / x.cols) + eps);
      for (int64_t i = 0; i < x.cols; ++i) yr[i] = xr[i] * inv * w[i];
    }
  }

  void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out) override {
    if (x.cols != w.cols || out.rows != x.rows || out.cols != w.rows)
      fail("internal: matmul shapes ({}x{}) * ({}x{})^T -> ({}x{})", x.rows, x.cols, w.rows, w.cols,
           out.rows, out.cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(x.rows), int(w.rows), int(x.cols),
                1.0f, f32(x), int(x.stride), f32(w), int(w.stride), 0.0f, f32(out),
                int(out.stride));
    if (bias && bias->data) {
      const float* b = f32(*bias);
      for (int64_t r = 0; r < out.rows; ++r) {
        float* o = f32(out) + r * out.stride;
        for (int64_t c = 0; c < out.cols; ++c) o[c] += b[c];
      }
    }
  }

  void rope(const Tensor& x, std::span<const int32_t> positions, int head_dim,
            const RopeParams& rope) override {
    const int half = head_dim / 2;
    const int64_t heads = x.cols / head_dim;
#pragma omp parallel for schedule(static) if (x.rows > 16)
    for (int64_t t = 0; t < x.rows; ++t) {
      // Angles in fp32 like the HF reference, so long positions round the same way.
      std::vector<float> cos_v(half), sin_v(half);
      for (int i = 0; i < half; ++i) {
        float angle = float(positions[t]) * rope.inv_freq[i];
        cos_v[i] = std::cos(angle);
        sin_v[i] = std::sin(angle);
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* v = f32(x) + t * x.stride + h * head_dim;
        for (int i = 0; i < half; ++i) {
          int a = rope.adjacent_pairs ? 2 * i : i;
          int b = rope.adjacent_pairs ? 2 * i + 1 : i + half;
          float x0 = v[a], x1 = v[b];
          v[a] = x0 * cos_v[i] - x1 * sin_v[i];
          v[b] = x1 * cos_v[i] + x0 * sin_v[i];
        }
      }
    }
  }

  void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    check_same_shape(gate, up, "swiglu");
#pragma omp parallel for schedule(static) if (gate.rows > 16)
    for (int64_t r = 0; r < gate.rows; ++r) {
      const float* g = f32(gate) + r * gate.stride;
      const float* u = f32(up) + r * up.stride;
      float* o = f32(out) + r * out.stride;
      for (int64_t i = 0; i < gate.cols; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
  }

  void add(const Tensor& x, const Tensor& y) override {
    check_same_shape(x, y, "add");
    for (int64_t r = 0; r < x.rows; ++r) {
      float* a = f32(x) + r * x.stride;
      const float* b = f32(y) + r * y.stride;
      for (int64_t i = 0; i < x.cols; ++i) a[i] += b[i];
    }
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                 const Tensor& out) override {
    cpu_attention(q, k, v, shape, out);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace kvo
