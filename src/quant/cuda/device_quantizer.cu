// The device quantizer API (device_quantizer.h): picks each family's kernels and composes the
// residual quantizer from its meta and res kernels, with the CPU's operation order.
#include "quant/bf16.h"
#include "quant/cuda/device_quantizer.h"
#include "quant/cuda/grid_tables.cuh"
#include "quant/cuda/kernels.cuh"
#include "quant/cuda/launch.cuh"
#include "quant/device.h"
#include "quant/residual.h"

namespace kvo::quant::cuda {
namespace {

template <typename T>
const T* as(const Quantizer& q) {
  return dynamic_cast<const T*>(&q);
}

bool base_supported(const Quantizer& q) {
  if (const auto* h = as<HiggsQuantizer>(q)) return higgs_tuple_supported(h->p());
  return as<UniformQuantizer>(q) || as<Fp8Quantizer>(q) || as<Bf16Quantizer>(q);
}

void encode_base(const Quantizer& q, const SourceRows& src, size_t n, const RecordMap& out,
                 cudaStream_t stream) {
  if (const auto* h = as<HiggsQuantizer>(q))
    higgs_encode(*h, src, n, out, stream);
  else if (const auto* u = as<UniformQuantizer>(q))
    uniform_encode(*u, src, n, out, stream);
  else
    elementwise_encode(as<Fp8Quantizer>(q) != nullptr, src, n, out, stream);
}

void decode_base(const Quantizer& q, const ConstRecordMap& in, const RowSelect& sel, size_t n,
                 const DestRows& dst, cudaStream_t stream) {
  if (const auto* h = as<HiggsQuantizer>(q))
    higgs_decode(*h, in, sel, n, dst, stream);
  else if (const auto* u = as<UniformQuantizer>(q))
    uniform_decode(*u, in, sel, n, dst, stream);
  else
    elementwise_decode(as<Fp8Quantizer>(q) != nullptr, in, sel, n, dst, stream);
}

void check_supported(const Quantizer& q) {
  if (!device_supported(q)) throw_error("quantizer '" + q.spec() + "' has no CUDA kernels");
}

// A row stride shorter than the row would overlap rows.
void check_stride(const char* what, int64_t stride, size_t dim) {
  if (stride < int64_t(dim))
    throw_error(std::string(what) + ": row stride " + std::to_string(stride) + " below dim " +
                std::to_string(dim));
}

// fp32 scratch of the residual steps, stream-ordered: freed after the kernels that use it.
struct StreamScratch {
  float* ptr = nullptr;
  cudaStream_t stream;
  StreamScratch(size_t count, cudaStream_t s) : stream(s) {
    KVO_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr),
                                   std::max<size_t>(1, count) * sizeof(float), stream));
  }
  ~StreamScratch() { cudaFreeAsync(ptr, stream); }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
};

// Residual layout (residual.h): blocks of `block` bytes, meta record then m residual records.
struct ResidualLayout {
  size_t m, meta_rec, res_rec, block;
  explicit ResidualLayout(const ResidualQuantizer& r, size_t dim)
      : m(size_t(r.m())),
        meta_rec(r.meta().encoded_bytes(1, dim)),
        res_rec(r.res().encoded_bytes(1, dim)),
        block(meta_rec + m * res_rec) {}
  template <typename Byte>
  RecordMapOf<Byte> metas(Byte* base) const {
    return {base, 0, 1, block, 0};
  }
  template <typename Byte>
  RecordMapOf<Byte> residuals(Byte* base) const {
    return {base, meta_rec, m, block, res_rec};
  }
};

}  // namespace

bool device_supported(const Quantizer& q) {
  if (const auto* r = as<ResidualQuantizer>(q))
    return base_supported(r->meta()) && base_supported(r->res());
  return base_supported(q);
}

void prepare(const Quantizer& q) {
  check_supported(q);
  if (const auto* r = as<ResidualQuantizer>(q)) {
    prepare(r->meta());
    prepare(r->res());
  } else if (const auto* h = as<HiggsQuantizer>(q)) {
    device_grid(h->grid());
  }
}

void encode_bf16(const Quantizer& q, const uint16_t* d_x, int64_t x_stride, size_t n, size_t dim,
                 uint8_t* d_out, cudaStream_t stream) {
  check_supported(q);
  check_stride("encode_bf16", x_stride, dim);
  if (n == 0 || dim == 0) return;
  const SourceRows x{d_x, true, x_stride, dim};
  const auto* r = as<ResidualQuantizer>(q);
  if (!r) {
    encode_base(q, x, n, RecordMap{d_out, 0, 1, q.encoded_bytes(1, dim), 0}, stream);
    return;
  }
  const ResidualLayout L(*r, dim);
  const size_t blocks = (n + L.m - 1) / L.m;
  // Means -> meta records -> decoded metas (in place of the means) -> residual records.
  StreamScratch meta(blocks * dim, stream);
  block_means(x, n, L.m, meta.ptr, stream);
  const SourceRows means{meta.ptr, false, int64_t(dim), dim};
  encode_base(r->meta(), means, blocks, L.metas(d_out), stream);
  decode_base(r->meta(), L.metas<const uint8_t>(d_out), RowSelect{}, blocks,
              DestRows{meta.ptr, false, int64_t(dim), dim}, stream);
  SourceRows residual = x;
  residual.minus = meta.ptr;
  residual.minus_div = L.m;
  encode_base(r->res(), residual, n, L.residuals(d_out), stream);
}

void decode_rows_bf16(const Quantizer& q, const uint8_t* records, size_t n_records,
                      const int32_t* d_rows, size_t n, size_t dim, uint16_t* d_out,
                      int64_t out_stride, cudaStream_t stream) {
  check_supported(q);
  check_stride("decode_rows_bf16", out_stride, dim);
  if (!d_rows && n > n_records)
    throw_error("decode_rows_bf16: " + std::to_string(n) + " rows from " +
                std::to_string(n_records) + " records");
  if (n == 0 || dim == 0) return;
  const DestRows out{d_out, true, out_stride, dim};
  const auto* r = as<ResidualQuantizer>(q);
  if (!r) {
    decode_base(q, ConstRecordMap{records, 0, 1, q.encoded_bytes(1, dim), 0}, RowSelect{d_rows, 1},
                n, out, stream);
    return;
  }
  // Row i = decode(meta of record rows[i] / m) + decode(residual rows[i]), added in fp32.
  const ResidualLayout L(*r, dim);
  StreamScratch meta(n * dim, stream);
  decode_base(r->meta(), L.metas(records), RowSelect{d_rows, L.m}, n,
              DestRows{meta.ptr, false, int64_t(dim), dim}, stream);
  DestRows sum = out;
  sum.add = meta.ptr;
  decode_base(r->res(), L.residuals(records), RowSelect{d_rows, 1}, n, sum, stream);
}

}  // namespace kvo::quant::cuda
