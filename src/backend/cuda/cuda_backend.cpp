// The CUDA backend (contract in backend/backend.h): bf16 tensors on device 0, one stream, cuBLAS
// GEMMs with fp32 accumulation, own kernels for the decode GEMMs (matvec.h) and the rest
// (kernels.h, attention.h), and a caching allocator so the forward pass's per-chunk alloc/free
// never reaches cudaMalloc in steady state.
#include "backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/cuda/attention.h"
#include "backend/cuda/check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/matvec.h"
#include "backend/cuda/sampling.h"
#include "util/error.h"

namespace kvo {
namespace cuda {

void throw_cuda(const char* call, const char* message) {
  fail("CUDA error in {}: {}", call, message);
}
[[noreturn]] void throw_message(const char* message) {
  throw Error(message);
}

}  // namespace cuda

namespace {

using cuda::bf16;

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
      return "cuBLAS error";
  }
}

#define KVO_CUBLAS(expr)                                           \
  do {                                                             \
    const cublasStatus_t kvo_st_ = (expr);                         \
    if (kvo_st_ != CUBLAS_STATUS_SUCCESS)                          \
      ::kvo::cuda::throw_cuda(#expr, cublas_status_name(kvo_st_)); \
  } while (0)

// Free lists by exact (rounded) size. All work runs on one stream, so a block freed after
// queuing kernels that use it can be handed out again at once: its next user is queued behind
// them. cudaMalloc failures release the cache and retry once.
class CachingAllocator {
 public:
  ~CachingAllocator() { release_cache(); }

  void* allocate(size_t bytes) {
    const size_t size = round(bytes);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      live_[p] = size;
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      release_cache();
      err = cudaMalloc(&p, size);
      if (err != cudaSuccess) {
        (void)cudaGetLastError();
        fail("CUDA out of memory: cudaMalloc of {:.1f} MiB failed ({}; {:.1f} MiB in use)",
             size / 1048576.0, cudaGetErrorString(err), in_use_ / 1048576.0);
      }
    }
    in_use_ += size;
    live_[p] = size;
    return p;
  }

  void deallocate(void* p) {
    auto it = live_.find(p);
    if (it == live_.end()) return;
    if (reserving_)
      reserved_.emplace_back(p, it->second);
    else
      free_[it->second].push_back(p);
    live_.erase(it);
  }

  // While a recording is made, freed blocks are set aside: the recorded work still uses them at
  // every replay. `end_reserving` hands them over; `release_reserved` frees them for reuse.
  using Reserved = std::vector<std::pair<void*, size_t>>;
  void begin_reserving() { reserving_ = true; }
  Reserved end_reserving() {
    reserving_ = false;
    return std::exchange(reserved_, {});
  }
  void release_reserved(const Reserved& blocks) {
    for (const auto& [p, size] : blocks) free_[size].push_back(p);
  }
  size_t cached_bytes() const {
    size_t n = 0;
    for (const auto& [size, blocks] : free_) n += size * blocks.size();
    return n;
  }

  void release_cache() {
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) {
        cudaFree(p);
        in_use_ -= size;
      }
    }
    free_.clear();
  }

 private:
  static size_t round(size_t bytes) {
    bytes = std::max<size_t>(bytes, 256);
    const size_t q = bytes <= (size_t{1} << 20) ? 512 : (size_t{2} << 20);
    return (bytes + q - 1) / q * q;
  }
  std::map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> live_;
  size_t in_use_ = 0;
  bool reserving_ = false;
  Reserved reserved_;
};

bf16* bf(const Tensor& t, const char* op) {
  if (t.dtype != DType::BF16) fail("internal: CUDA {} expects bf16 tensors", op);
  return static_cast<bf16*>(t.data);
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  if (a.rows != b.rows || a.cols != b.cols)
    fail("internal: {} shape mismatch ({}x{} vs {}x{})", op, a.rows, a.cols, b.rows, b.cols);
}

// The kernel arguments of an attention shape, without the tensors (attention_workspace_bytes
// plans from these alone).
cuda::AttentionArgs attention_args(const AttentionShape& shape) {
  cuda::AttentionArgs a;
  a.num_heads = shape.num_heads;
  a.num_kv_heads = shape.num_kv_heads;
  a.head_dim = shape.head_dim;
  a.q_len = shape.q_len;
  a.q_start = shape.q_start;
  a.kv_len = shape.kv_len;
  a.scale = shape.scale;
  return a;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    KVO_CUDA(cudaSetDevice(0));
    KVO_CUDA(cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, 0));
    KVO_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    KVO_CUBLAS(cublasCreate(&cublas_));
    KVO_CUBLAS(cublasSetStream(cublas_, stream_));
    // A workspace of our own: cuBLAS then allocates nothing while a decode step is recorded.
    KVO_CUDA(cudaMalloc(&cublas_workspace_, kCublasWorkspace));
    KVO_CUBLAS(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspace));
    KVO_CUDA(cudaMalloc(&split_counters_, kSplitCounters * sizeof(uint32_t)));
    KVO_CUDA(cudaMemsetAsync(split_counters_, 0, kSplitCounters * sizeof(uint32_t), stream_));
    for (Staging& s : staging_) KVO_CUDA(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    for (Staging& s : staging_) {
      if (s.host) cudaFreeHost(s.host);
      cudaEventDestroy(s.done);
    }
    if (positions_dev_) allocator_.deallocate(positions_dev_);
    if (inv_freq_dev_) allocator_.deallocate(inv_freq_dev_);
    cublasDestroy(cublas_);
    cudaFree(cublas_workspace_);
    cudaFree(split_counters_);
    allocator_.release_cache();
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }

  DeviceArray alloc(int64_t rows, int64_t cols) override {
    void* p = allocator_.allocate(static_cast<size_t>(rows * cols) * sizeof(bf16));
    return DeviceArray(this, p, DType::BF16, rows, cols);
  }

  DeviceArray upload(const HostTensor& host) override {
    const int64_t cols = host.shape.empty() ? 1 : host.shape.back();
    const int64_t rows = cols ? host.numel() / cols : 0;
    DeviceArray out = alloc(rows, cols);
    bf16* dst = static_cast<bf16*>(out.tensor().data);
    const int64_t n = rows * cols;
    if (host.dtype == DType::BF16) {
      KVO_CUDA(cudaMemcpyAsync(dst, host.data, n * sizeof(bf16), cudaMemcpyHostToDevice, stream_));
      return out;
    }
    // Raw bytes go up in chunks through a device staging buffer, the conversion runs there.
    const int src_dtype = host.dtype == DType::F32 ? 0 : 1;
    const size_t elem = dtype_size(host.dtype);
    const int64_t chunk = std::min<int64_t>(n, int64_t{16} << 20);
    void* stage = allocator_.allocate(static_cast<size_t>(std::max<int64_t>(chunk, 1)) * elem);
    for (int64_t i = 0; i < n; i += chunk) {
      const int64_t m = std::min(chunk, n - i);
      KVO_CUDA(cudaMemcpyAsync(stage, static_cast<const char*>(host.data) + i * elem, m * elem,
                               cudaMemcpyHostToDevice, stream_));
      cuda::convert_to_bf16(stage, src_dtype, dst + i, m, stream_);
    }
    allocator_.deallocate(stage);
    // Pageable sources: make sure the caller may drop `host` once we return.
    KVO_CUDA(cudaStreamSynchronize(stream_));
    return out;
  }

  void free(void* data) override { allocator_.deallocate(data); }

  std::vector<float> download(const Tensor& src) override {
    const bf16* p = bf(src, "download");
    std::vector<float> out(static_cast<size_t>(src.rows * src.cols));
    if (out.empty()) return out;
    std::vector<uint16_t> raw(out.size());
    KVO_CUDA(cudaMemcpy2DAsync(raw.data(), src.cols * sizeof(bf16), p, src.stride * sizeof(bf16),
                               src.cols * sizeof(bf16), src.rows, cudaMemcpyDeviceToHost, stream_));
    KVO_CUDA(cudaStreamSynchronize(stream_));
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(raw[i]);
    return out;
  }

  void copy(const Tensor& src, const Tensor& dst) override {
    check_same_shape(src, dst, "copy");
    if (src.rows == 0 || src.cols == 0) return;
    KVO_CUDA(cudaMemcpy2DAsync(bf(dst, "copy"), dst.stride * sizeof(bf16), bf(src, "copy"),
                               src.stride * sizeof(bf16), src.cols * sizeof(bf16), src.rows,
                               cudaMemcpyDeviceToDevice, stream_));
  }

  void embedding(std::span<const int32_t> ids, const Tensor& table, const Tensor& out) override {
    for (int32_t id : ids)
      if (id < 0 || id >= table.rows)
        fail("token id {} is outside the vocabulary (0..{})", id, table.rows - 1);
    if (ids.empty()) return;
    int32_t* dev = static_cast<int32_t*>(allocator_.allocate(ids.size_bytes()));
    to_device(dev, ids.data(), ids.size_bytes());
    cuda::embedding(dev, int64_t(ids.size()), bf(table, "embedding"), table.stride, table.cols,
                    bf(out, "embedding"), out.stride, stream_);
    allocator_.deallocate(dev);
  }

  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override {
    check_same_shape(x, out, "rmsnorm");
    if (weight.rows * weight.cols != x.cols) fail("internal: rmsnorm weight size mismatch");
    cuda::rmsnorm(bf(x, "rmsnorm"), x.stride, bf(weight, "rmsnorm"), eps, bf(out, "rmsnorm"),
                  out.stride, x.rows, x.cols, stream_);
  }

  void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out) override {
    if (x.cols != w.cols || out.rows != x.rows || out.cols != w.rows)
      fail("internal: matmul shapes ({}x{}) * ({}x{})^T -> ({}x{})", x.rows, x.cols, w.rows, w.cols,
           out.rows, out.cols);
    if (x.rows == 0 || w.rows == 0) return;
    if (cuda::matvec_fits(bf(x, "matmul"), x.stride, bf(w, "matmul"), w.stride, x.rows, x.cols)) {
      const cuda::MatvecPart part = matvec_part(w, bias, out);
      cuda::matvec(bf(x, "matmul"), x.stride, &part, 1, x.rows, x.cols, {}, stream_);
      return;
    }
    float beta = 0.0f;
    if (bias && bias->data) {
      cuda::broadcast_rows(bf(*bias, "bias"), bf(out, "matmul"), out.stride, out.rows, out.cols,
                           stream_);
      beta = 1.0f;  // cuBLAS adds x * w^T onto the bias rows in fp32
    }
    gemm(x, w, beta, out);
  }

  // out = x * w^T + beta * out through cuBLAS, accumulating in fp32.
  void gemm(const Tensor& x, const Tensor& w, float beta, const Tensor& out) {
    const float alpha = 1.0f;
    // Row-major out(n, o) = x(n, k) * w(o, k)^T is column-major out^T(o, n) = w^T^T * x^T.
    KVO_CUBLAS(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(w.rows), int(x.rows),
                            int(x.cols), &alpha, bf(w, "matmul"), CUDA_R_16BF, int(w.stride),
                            bf(x, "matmul"), CUDA_R_16BF, int(x.stride), &beta, bf(out, "matmul"),
                            CUDA_R_16BF, int(out.stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }

  void matmul_many(const Tensor& x, const InputNorm* norm, std::span<const Tensor> ws,
                   std::span<const Tensor* const> biases, std::span<const Tensor> outs) override {
    bool one_launch = ws.size() <= size_t(cuda::kMatvecParts) && norm_fits(x, norm);
    for (size_t i = 0; i < ws.size() && one_launch; ++i)
      one_launch = x.cols == ws[i].cols && outs[i].rows == x.rows && outs[i].cols == ws[i].rows &&
                   cuda::matvec_fits(bf(x, "matmul"), x.stride, bf(ws[i], "matmul"), ws[i].stride,
                                     x.rows, x.cols);
    if (!one_launch) return Backend::matmul_many(x, norm, ws, biases, outs);
    cuda::MatvecPart parts[cuda::kMatvecParts];
    for (size_t i = 0; i < ws.size(); ++i) parts[i] = matvec_part(ws[i], biases[i], outs[i]);
    cuda::matvec(bf(x, "matmul"), x.stride, parts, int(ws.size()), x.rows, x.cols,
                 matvec_norm(norm), stream_);
  }

  void matmul_add(const Tensor& x, const Tensor& w, const Tensor* bias,
                  const Tensor& out) override {
    if (x.cols != w.cols || out.rows != x.rows || out.cols != w.rows)
      fail("internal: matmul_add shapes ({}x{}) * ({}x{})^T -> ({}x{})", x.rows, x.cols, w.rows,
           w.cols, out.rows, out.cols);
    if (x.rows == 0 || w.rows == 0) return;
    if (!cuda::matvec_fits(bf(x, "matmul"), x.stride, bf(w, "matmul"), w.stride, x.rows, x.cols)) {
      if (bias && bias->data) return Backend::matmul_add(x, w, bias, out);
      return gemm(x, w, 1.0f, out);  // cuBLAS adds onto out in fp32
    }
    const cuda::MatvecPart part = matvec_part(w, bias, out);
    cuda::MatvecOptions options;
    options.accumulate = true;
    cuda::matvec(bf(x, "matmul"), x.stride, &part, 1, x.rows, x.cols, options, stream_);
  }

  void matmul_swiglu(const Tensor& x, const InputNorm* norm, const Tensor& w,
                     const Tensor& out) override {
    const int64_t features = w.rows / 2;
    if (w.rows % 2 != 0 || x.cols != w.cols || out.rows != x.rows || out.cols != features)
      fail("internal: matmul_swiglu shapes ({}x{}) * ({}x{})^T -> ({}x{})", x.rows, x.cols, w.rows,
           w.cols, out.rows, out.cols);
    // w_up starts features * stride elements after w: 16-byte aligned whenever w fits.
    if (!norm_fits(x, norm) ||
        !cuda::matvec_fits(bf(x, "matmul"), x.stride, bf(w, "matmul"), w.stride, x.rows, x.cols))
      return Backend::matmul_swiglu(x, norm, w, out);
    cuda::MatvecPart part = matvec_part(w.row_range(0, features), nullptr, out);
    part.w_up = bf(w.row_range(features, features), "matmul");
    cuda::matvec(bf(x, "matmul"), x.stride, &part, 1, x.rows, x.cols, matvec_norm(norm), stream_);
  }

  void rope(const Tensor& x, std::span<const int32_t> positions, int head_dim,
            const RopeParams& rope) override {
    if (int64_t(positions.size()) != x.rows) fail("internal: rope needs one position per row");
    if (head_dim <= 0 || x.cols % head_dim != 0 || int(rope.inv_freq.size()) != head_dim / 2)
      fail("internal: rope head_dim {} does not fit {} columns", head_dim, x.cols);
    if (x.rows == 0) return;
    // The forward pass passes the same positions for q and k of every layer: upload once.
    if (positions_host_.size() != positions.size() ||
        !std::equal(positions.begin(), positions.end(), positions_host_.begin())) {
      if (positions_dev_) allocator_.deallocate(positions_dev_);
      positions_host_.assign(positions.begin(), positions.end());
      positions_dev_ = static_cast<int32_t*>(allocator_.allocate(positions.size_bytes()));
      to_device(positions_dev_, positions.data(), positions.size_bytes());
    }
    cuda::rope(bf(x, "rope"), x.stride, x.rows, x.cols / head_dim, head_dim, positions_dev_,
               device_inv_freq(rope), rope.adjacent_pairs, stream_);
  }

  void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    check_same_shape(gate, up, "swiglu");
    check_same_shape(gate, out, "swiglu");
    cuda::swiglu(bf(gate, "swiglu"), gate.stride, bf(up, "swiglu"), up.stride, bf(out, "swiglu"),
                 out.stride, gate.rows, gate.cols, stream_);
  }

  void add(const Tensor& x, const Tensor& y) override {
    check_same_shape(x, y, "add");
    cuda::add(bf(x, "add"), x.stride, bf(y, "add"), y.stride, x.rows, x.cols, stream_);
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                 const Tensor& out) override {
    run_attention(q, k, v, shape, nullptr, out);
  }

  void synchronize() override { KVO_CUDA(cudaStreamSynchronize(stream_)); }
  cudaStream_t stream() const { return stream_; }

  DeviceArray alloc_ints(int64_t n) override {
    return DeviceArray(this, allocator_.allocate(size_t(std::max<int64_t>(n, 1)) * 4), DType::I32,
                       n, 1);
  }
  void write_ints(const Tensor& dst, std::span<const int32_t> values) override {
    if (int64_t(values.size()) != dst.rows) fail("internal: write_ints size mismatch");
    if (!values.empty()) to_device(i32(dst), values.data(), values.size_bytes());
  }
  std::vector<int32_t> read_ints(const Tensor& src) override {
    std::vector<int32_t> out(static_cast<size_t>(src.rows));
    if (out.empty()) return out;
    KVO_CUDA(
        cudaMemcpyAsync(out.data(), i32(src), out.size() * 4, cudaMemcpyDeviceToHost, stream_));
    KVO_CUDA(cudaStreamSynchronize(stream_));
    return out;
  }
  void embedding_at(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    cuda::embedding(i32(ids), ids.rows, bf(table, "embedding"), table.stride, table.cols,
                    bf(out, "embedding"), out.stride, stream_);
  }
  void rope_at(const Tensor& x, const Tensor& positions, int head_dim,
               const RopeParams& rope) override {
    if (positions.rows != x.rows) fail("internal: rope needs one position per row");
    cuda::rope(bf(x, "rope"), x.stride, x.rows, x.cols / head_dim, head_dim, i32(positions),
               device_inv_freq(rope), rope.adjacent_pairs, stream_);
  }
  void rope_store_at(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                     int head_dim, const RopeParams& rope, const Tensor& keys,
                     const Tensor& values) override {
    check_rope_store(q, k, v, positions, head_dim, rope, keys, values);
    cuda::rope_store(bf(q, "rope"), q.stride, q.cols / head_dim, bf(k, "rope"), k.stride,
                     bf(v, "copy"), v.stride, k.cols / head_dim, bf(keys, "copy"), keys.stride,
                     bf(values, "copy"), values.stride, q.rows, head_dim, i32(positions),
                     device_inv_freq(rope), rope.adjacent_pairs, stream_);
  }
  void copy_rows_at(const Tensor& src, const Tensor& dst, const Tensor& first) override {
    if (src.cols != dst.cols) fail("internal: copy_rows_at column mismatch");
    cuda::copy_rows_at(bf(src, "copy"), src.stride, bf(dst, "copy"), dst.stride, src.rows, src.cols,
                       i32(first), stream_);
  }
  void attention_at(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                    const Tensor& q_start, const Tensor& out) override {
    run_attention(q, k, v, shape, i32(q_start), out);
  }
  void rope_store_attention_batch_at(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& positions, int head_dim, const RopeParams& rope,
                                     std::span<const Tensor> keys, std::span<const Tensor> values,
                                     const AttentionShape& shape, const Tensor& out) override {
    check_batch_tables(q, keys, values);
    check_rope_store(q, k, v, positions, head_dim, rope, keys[0], values[0]);
    const int64_t qw = int64_t{shape.num_heads} * shape.head_dim;
    if (shape.q_len != 1 || shape.head_dim != head_dim || q.cols != qw || out.rows != q.rows ||
        out.cols != qw || positions.rows != q.rows ||
        keys[0].cols != int64_t{shape.num_kv_heads} * shape.head_dim)
      fail("internal: rope_store_attention_batch_at shapes do not match the attention shape");
    // The decode kernel rotates q as it loads it and appends k and v itself (cuda/attention.h).
    const bool fused = cuda::attention_fuses_rope(attention_args(shape));
    for (int64_t b0 = 0; b0 < q.rows; b0 += cuda::kMaxSeqs) {
      const int64_t n = std::min<int64_t>(cuda::kMaxSeqs, q.rows - b0);
      const cuda::SeqTables tables = seq_tables(keys, values, b0, n);
      const bf16* k0 = bf(k, "rope") + b0 * k.stride;
      const bf16* v0 = bf(v, "copy") + b0 * v.stride;
      if (!fused)
        cuda::rope_store(bf(q, "rope") + b0 * q.stride, q.stride, q.cols / head_dim, k0, k.stride,
                         v0, v.stride, k.cols / head_dim, nullptr, keys[0].stride, nullptr,
                         values[0].stride, n, head_dim, i32(positions) + b0, device_inv_freq(rope),
                         rope.adjacent_pairs, stream_, &tables);
      cuda::AttentionArgs a = attention_args(shape);
      a.q = bf(q, "attention") + b0 * q.stride;
      a.q_stride = q.stride;
      a.k_stride = keys[0].stride;
      a.v_stride = values[0].stride;
      a.out = bf(out, "attention") + b0 * out.stride;
      a.out_stride = out.stride;
      a.q_start_at = i32(positions) + b0;
      if (fused) {
        a.rope_inv_freq = device_inv_freq(rope);
        a.rope_adjacent = rope.adjacent_pairs;
        a.new_k = k0;
        a.new_k_stride = k.stride;
        a.new_v = v0;
        a.new_v_stride = v.stride;
      }
      launch_attention(a, &tables);
    }
  }
  int64_t prefill_chunk_rows() const override { return 2048; }
  int64_t attention_workspace_bytes(const AttentionShape& shape) const override {
    return cuda::attention_workspace_bytes(attention_args(shape), num_sms_);
  }
  void sample(const Tensor& logits, float temperature, int top_k, float top_p,
              std::span<const float> uniforms, const Tensor& ids) override {
    if (int64_t(uniforms.size()) != logits.rows || ids.rows != logits.rows)
      fail("internal: sample needs one uniform and one id slot per row");
    // Greedy decoding reads neither the draws nor a scratch row (and then copies nothing).
    float *u = nullptr, *scratch = nullptr;
    if (temperature != 0.0f) {
      u = static_cast<float*>(allocator_.allocate(uniforms.size_bytes()));
      to_device(u, uniforms.data(), uniforms.size_bytes());
      scratch = static_cast<float*>(
          allocator_.allocate(size_t(logits.rows * logits.cols) * sizeof(float)));
    }
    cuda::sample(bf(logits, "sample"), logits.stride, logits.rows, logits.cols, temperature, top_k,
                 top_p, u, scratch, i32(ids), stream_);
    if (u) allocator_.deallocate(u);
    if (scratch) allocator_.deallocate(scratch);
  }

  std::unique_ptr<Recording> record(const std::function<void()>& queue) override;
  std::unique_ptr<IntsReadback> ints_readback(int64_t n) override;

  void replay(cudaGraphExec_t graph) { KVO_CUDA(cudaGraphLaunch(graph, stream_)); }
  void release_reserved(const CachingAllocator::Reserved& blocks) {
    allocator_.release_reserved(blocks);
  }

  int64_t available_bytes() override {
    size_t free = 0, total = 0;
    KVO_CUDA(cudaMemGetInfo(&free, &total));
    return int64_t(free + allocator_.cached_bytes());
  }

  double read_bandwidth(int64_t bytes) {
    bytes = bytes / 16 * 16;
    void* data = allocator_.allocate(size_t(bytes));
    KVO_CUDA(cudaMemsetAsync(data, 1, size_t(bytes), stream_));
    const unsigned blocks = unsigned(num_sms_) * 4;
    auto* out = static_cast<uint32_t*>(allocator_.allocate(blocks * sizeof(uint32_t)));
    cudaEvent_t start, stop;
    KVO_CUDA(cudaEventCreate(&start));
    KVO_CUDA(cudaEventCreate(&stop));
    std::vector<float> ms;
    for (int rep = 0; rep < 6; ++rep) {  // the first run warms up
      KVO_CUDA(cudaEventRecord(start, stream_));
      cuda::read_sum(data, bytes, blocks, out, stream_);
      KVO_CUDA(cudaEventRecord(stop, stream_));
      KVO_CUDA(cudaEventSynchronize(stop));
      float t = 0;
      KVO_CUDA(cudaEventElapsedTime(&t, start, stop));
      if (rep > 0) ms.push_back(t);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    allocator_.deallocate(out);
    allocator_.deallocate(data);
    std::sort(ms.begin(), ms.end());
    return double(bytes) / (ms[ms.size() / 2] * 1e-3);
  }

 private:
  // Small host->device copies (token ids, positions) through pinned slots, so that they are
  // truly asynchronous; a slot is reused only after its previous copy has completed.
  struct Staging {
    void* host = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
  };

  static cuda::MatvecPart matvec_part(const Tensor& w, const Tensor* bias, const Tensor& out) {
    return {bf(w, "matmul"),   w.stride,   bias && bias->data ? bf(*bias, "bias") : nullptr,
            bf(out, "matmul"), out.stride, w.rows};
  }

  // Whether the matvec kernel can apply `norm` (none, or a 16-byte aligned weight of x.cols).
  static bool norm_fits(const Tensor& x, const InputNorm* norm) {
    return !norm || (norm->weight.rows * norm->weight.cols == x.cols &&
                     reinterpret_cast<uintptr_t>(bf(norm->weight, "rmsnorm")) % 16 == 0);
  }
  static cuda::MatvecOptions matvec_norm(const InputNorm* norm) {
    cuda::MatvecOptions options;
    if (norm) {
      options.norm_w = bf(norm->weight, "rmsnorm");
      options.eps = norm->eps;
    }
    return options;
  }

  static int32_t* i32(const Tensor& t) {
    if (t.dtype != DType::I32) fail("internal: expected an index (I32) tensor");
    return static_cast<int32_t*>(t.data);
  }

  // rope_store_at's shapes, the cache's column count from keys and values.
  static void check_rope_store(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& positions, int head_dim, const RopeParams& rope,
                               const Tensor& keys, const Tensor& values) {
    if (k.rows != q.rows || v.rows != q.rows || positions.rows != q.rows || k.cols != v.cols ||
        k.cols != keys.cols || v.cols != values.cols || head_dim <= 0 || head_dim % 2 != 0 ||
        q.cols % head_dim != 0 || k.cols % head_dim != 0 ||
        int(rope.inv_freq.size()) != head_dim / 2)
      fail(
          "internal: rope_store shapes (q {}x{}, k {}x{}, v {}x{}, {} positions, cache {} / {} "
          "columns, head_dim {})",
          q.rows, q.cols, k.rows, k.cols, v.rows, v.cols, positions.rows, keys.cols, values.cols,
          head_dim);
  }
  // A batch's tables: one key and value table per row of q, all of one width and stride.
  static void check_batch_tables(const Tensor& q, std::span<const Tensor> keys,
                                 std::span<const Tensor> values) {
    if (int64_t(keys.size()) != q.rows || int64_t(values.size()) != q.rows || q.rows == 0)
      fail("internal: a batched decode op needs one key and value table per row");
    for (size_t b = 0; b < keys.size(); ++b)
      if (keys[b].stride != keys[0].stride || values[b].stride != values[0].stride ||
          keys[b].cols != keys[0].cols || values[b].cols != keys[0].cols)
        fail("internal: the tables of a batched decode op differ in width or stride");
  }
  // Rows [first, first + n) of a batch's tables, n <= kMaxSeqs.
  static cuda::SeqTables seq_tables(std::span<const Tensor> keys, std::span<const Tensor> values,
                                    int64_t first, int64_t n) {
    cuda::SeqTables t;
    t.count = int(n);
    for (int64_t s = 0; s < n; ++s) {
      t.keys[s] = bf(keys[first + s], "attention");
      t.values[s] = bf(values[first + s], "attention");
    }
    return t;
  }

  // q_start_at: nullptr, or the device int32 the kernel reads q_start from (attention_at).
  void run_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& shape,
                     const int32_t* q_start_at, const Tensor& out) {
    const int64_t qw = int64_t{shape.num_heads} * shape.head_dim;
    const int64_t kw = int64_t{shape.num_kv_heads} * shape.head_dim;
    if (q.rows != shape.q_len || q.cols != qw || out.rows != shape.q_len || out.cols != qw ||
        k.rows < shape.kv_len || v.rows < shape.kv_len || k.cols != kw || v.cols != kw)
      fail("internal: attention tensor shapes do not match the attention shape");
    cuda::AttentionArgs a = attention_args(shape);
    a.q = bf(q, "attention");
    a.q_stride = q.stride;
    a.k = bf(k, "attention");
    a.k_stride = k.stride;
    a.v = bf(v, "attention");
    a.v_stride = v.stride;
    a.out = bf(out, "attention");
    a.out_stride = out.stride;
    a.q_start_at = q_start_at;
    launch_attention(a, nullptr);
  }

  // The attention of `a` (one sequence, or with seqs a batch of them) with a split-K workspace
  // from the allocator.
  void launch_attention(const cuda::AttentionArgs& a, const cuda::SeqTables* seqs) {
    const int64_t ws_bytes =
        cuda::attention_workspace_bytes(a, num_sms_, 0, seqs ? seqs->count : 1);
    void* ws = ws_bytes > 0 ? allocator_.allocate(static_cast<size_t>(ws_bytes)) : nullptr;
    cuda::AttentionArgs counted = a;
    counted.split_counters = split_counters_;
    counted.split_counter_slots = kSplitCounters;
    cuda::attention(counted, ws, num_sms_, stream_, 0, seqs);
    if (ws) allocator_.deallocate(ws);
  }

  // RoPE frequencies in device memory, uploaded when they change (one model: once).
  const float* device_inv_freq(const RopeParams& rope) {
    if (inv_freq_host_ != rope.inv_freq) {
      if (inv_freq_dev_) allocator_.deallocate(inv_freq_dev_);
      inv_freq_host_ = rope.inv_freq;
      inv_freq_dev_ =
          static_cast<float*>(allocator_.allocate(rope.inv_freq.size() * sizeof(float)));
      to_device(inv_freq_dev_, rope.inv_freq.data(), rope.inv_freq.size() * sizeof(float));
    }
    return inv_freq_dev_;
  }

  void to_device(void* dst, const void* src, size_t bytes) {
    Staging& s = staging_[next_staging_++ % staging_.size()];
    KVO_CUDA(cudaEventSynchronize(s.done));
    if (s.capacity < bytes) {
      if (s.host) KVO_CUDA(cudaFreeHost(s.host));
      s.capacity = std::max<size_t>(bytes, 1 << 16);
      KVO_CUDA(cudaMallocHost(&s.host, s.capacity));
    }
    std::memcpy(s.host, src, bytes);
    KVO_CUDA(cudaMemcpyAsync(dst, s.host, bytes, cudaMemcpyHostToDevice, stream_));
    KVO_CUDA(cudaEventRecord(s.done, stream_));
  }

  static constexpr size_t kCublasWorkspace = size_t{32} << 20;  // NVIDIA's advice for Hopper
  int num_sms_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  // The decode attention's split counters: every attention runs on stream_, in order.
  static constexpr int64_t kSplitCounters = int64_t{cuda::kMaxSeqs} * 256;
  uint32_t* split_counters_ = nullptr;
  CachingAllocator allocator_;
  std::array<Staging, 8> staging_{};
  size_t next_staging_ = 0;
  std::vector<int32_t> positions_host_;
  int32_t* positions_dev_ = nullptr;
  std::vector<float> inv_freq_host_;
  float* inv_freq_dev_ = nullptr;
};

// A CUDA graph of the captured work; it owns the blocks the work freed while being recorded.
class CudaRecording final : public Recording {
 public:
  CudaRecording(CudaBackend& backend, cudaGraphExec_t graph, CachingAllocator::Reserved blocks)
      : backend_(backend), graph_(graph), blocks_(std::move(blocks)) {}
  ~CudaRecording() override {
    backend_.synchronize();
    cudaGraphExecDestroy(graph_);
    backend_.release_reserved(blocks_);
  }
  void replay() override { backend_.replay(graph_); }

 private:
  CudaBackend& backend_;
  cudaGraphExec_t graph_;
  CachingAllocator::Reserved blocks_;
};

// The ids land in pinned memory behind the work queued before queue(); an event marks them.
class CudaIntsReadback final : public IntsReadback {
 public:
  CudaIntsReadback(cudaStream_t stream, int64_t n) : stream_(stream), n_(n) {
    KVO_CUDA(cudaMallocHost(&host_, size_t(std::max<int64_t>(n, 1)) * sizeof(int32_t)));
    KVO_CUDA(cudaEventCreateWithFlags(&landed_, cudaEventDisableTiming));
  }
  ~CudaIntsReadback() override {
    cudaEventSynchronize(landed_);  // a queued copy may still write host_
    cudaEventDestroy(landed_);
    cudaFreeHost(host_);
  }
  void queue(const Tensor& src) override {
    if (src.rows != n_ || src.dtype != DType::I32) fail("internal: ints_readback size mismatch");
    KVO_CUDA(cudaMemcpyAsync(host_, src.data, size_t(n_) * sizeof(int32_t), cudaMemcpyDeviceToHost,
                             stream_));
    KVO_CUDA(cudaEventRecord(landed_, stream_));
  }
  std::vector<int32_t> wait() override {
    KVO_CUDA(cudaEventSynchronize(landed_));
    return std::vector<int32_t>(host_, host_ + n_);
  }

 private:
  cudaStream_t stream_;
  int64_t n_;
  int32_t* host_ = nullptr;
  cudaEvent_t landed_ = nullptr;
};

std::unique_ptr<IntsReadback> CudaBackend::ints_readback(int64_t n) {
  return std::make_unique<CudaIntsReadback>(stream_, n);
}

std::unique_ptr<Recording> CudaBackend::record(const std::function<void()>& queue) {
  // Relaxed: the caching allocator may still cudaMalloc while the work is captured.
  KVO_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
  allocator_.begin_reserving();
  cudaGraph_t graph = nullptr;
  try {
    queue();
  } catch (...) {
    cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    allocator_.release_reserved(allocator_.end_reserving());
    throw;
  }
  CachingAllocator::Reserved blocks = allocator_.end_reserving();
  KVO_CUDA(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  KVO_CUDA(err);
  return std::make_unique<CudaRecording>(*this, exec, std::move(blocks));
}

}  // namespace

double cuda_read_bandwidth(Backend& backend, int64_t bytes) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (!cuda) fail("internal: cuda_read_bandwidth needs the CUDA backend");
  return cuda->read_bandwidth(bytes);
}

cudaStream_t cuda_stream_of(const Backend& backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
  return cuda ? cuda->stream() : nullptr;
}

std::unique_ptr<Backend> make_cuda_backend() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return std::make_unique<CudaBackend>();
}

}  // namespace kvo
