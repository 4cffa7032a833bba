#include "backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "util/error.h"

namespace kvo {
namespace {

const int32_t* i32(const Tensor& t) {
  if (t.dtype != DType::I32) fail("internal: expected an index (I32) tensor");
  return static_cast<const int32_t*>(t.data);
}

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
    return DeviceArray(this, aligned(rows * cols * 4), DType::F32, rows, cols);
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
    gemm(x, w, bias, 0.0f, out);
  }
  void matmul_add(const Tensor& x, const Tensor& w, const Tensor* bias,
                  const Tensor& out) override {
    gemm(x, w, bias, 1.0f, out);
  }

  // out = x * w^T (+ bias) + beta * out.
  void gemm(const Tensor& x, const Tensor& w, const Tensor* bias, float beta, const Tensor& out) {
    if (x.cols != w.cols || out.rows != x.rows || out.cols != w.rows)
      fail("internal: matmul shapes ({}x{}) * ({}x{})^T -> ({}x{})", x.rows, x.cols, w.rows, w.cols,
           out.rows, out.cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(x.rows), int(w.rows), int(x.cols),
                1.0f, f32(x), int(x.stride), f32(w), int(w.stride), beta, f32(out),
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

  // Index tensors are host memory here: the "_at" ops read them at once.
  DeviceArray alloc_ints(int64_t n) override {
    return DeviceArray(this, aligned(n * 4), DType::I32, n, 1);
  }
  void write_ints(const Tensor& dst, std::span<const int32_t> values) override {
    check(int64_t(values.size()) == dst.rows, "internal: write_ints size mismatch");
    std::memcpy(const_cast<int32_t*>(i32(dst)), values.data(), values.size_bytes());
  }
  std::vector<int32_t> read_ints(const Tensor& src) override {
    return std::vector<int32_t>(i32(src), i32(src) + src.rows);
  }
  void embedding_at(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    embedding(std::span(i32(ids), size_t(ids.rows)), table, out);
  }
  void rope_at(const Tensor& x, const Tensor& positions, int head_dim,
               const RopeParams& params) override {
    rope(x, std::span(i32(positions), size_t(positions.rows)), head_dim, params);
  }
  void copy_rows_at(const Tensor& src, const Tensor& dst, const Tensor& first) override {
    copy(src, dst.row_range(*i32(first), src.rows));
  }
  void attention_at(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                    const Tensor& q_start, const Tensor& out) override {
    AttentionShape s = shape;
    s.q_start = *i32(q_start);
    s.kv_len = s.q_start + s.q_len;
    check(s.kv_len <= shape.kv_len, "internal: attention_at past its key bound");
    cpu_attention(q, k, v, s, out);
  }
  void sample(const Tensor& logits, float temperature, int top_k, float top_p,
              std::span<const float> uniforms, const Tensor& ids) override {
    check(int64_t(uniforms.size()) == logits.rows && ids.rows == logits.rows,
          "internal: sample needs one uniform and one id slot per row");
    int32_t* out = const_cast<int32_t*>(i32(ids));
    for (int64_t r = 0; r < logits.rows; ++r)
      out[r] = cpu_sample_token(std::span(f32(logits) + r * logits.stride, size_t(logits.cols)),
                                temperature, top_k, top_p, uniforms[r]);
  }
  int64_t available_bytes() override {
    return int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGE_SIZE));
  }

 private:
  static void* aligned(int64_t bytes) {
    void* p = std::aligned_alloc(64, (size_t(bytes) + 63) / 64 * 64 + 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace kvo
