// The device quantizer API (quant/cuda/device_quantizer.h) against the CPU quantizers: encode
// bytes, decode of chosen rows (also from mapped pinned host memory), and HIGGS scores.
// Skipped without a CUDA build or device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <tuple>

#include "quant/device.h"
#include "quant/hadamard.h"
#include "quant/higgs.h"
#include "quant/residual.h"
#include "quant/spec.h"
#include "util/error.h"
#ifdef KVO_HAVE_CUDA
#include <cuda_runtime.h>

#include "quant/cuda/device_buffer.h"
#include "quant/cuda/device_quantizer.h"
#endif

namespace kvo::quant {
namespace {

#define SKIP_WITHOUT_CUDA()                                \
  do {                                                     \
    std::string why;                                       \
    if (!cuda_device_available(&why)) GTEST_SKIP() << why; \
  } while (0)

// (n, dim) N(0,1) values rounded to bf16, so the CPU sees exactly what the device encodes.
std::vector<float> bf16_normal(size_t n, size_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * dim);
  for (float& v : x) v = bf16_to_float(float_to_bf16(nd(rng)));
  return x;
}

// Every family with kernels, odd shapes included: padded groups (dim 200 with group 64, d=6),
// bit streams straddling words (3 bits), rows ending inside 8 values (130: uniform 5 bits in
// groups of 16, fp8 records off 8-byte alignment), groups that end inside 8 values (uniform
// groups of 10 at dim 100: a row's last 8 values reach past its last group), residual blocks
// cut short and residual records at unaligned offsets (an fp8 meta record of 130 bytes).
const std::vector<std::pair<std::string, size_t>> kSpecs = {
    {"higgs:d=4,n=256", 128},
    {"higgs:d=2,n=256,group=64", 200},
    {"higgs:d=2,n=16", 128},
    {"higgs:d=2,n=64,group=256", 256},
    {"higgs:d=4,n=16,group=512", 1024},
    {"higgs:d=6,n=4096", 128},
    {"higgs:d=8,n=128,group=1024", 1024},
    {"higgs:d=8,n=256,group=2048", 2048},
    {"higgs:d=8,n=4096", 256},
    {"higgs:d=16,n=256,group=4096", 4096},
    {"higgs:d=2,n=256,group=1024", 1024},
    {"uniform:bits=2,group=64", 128},
    {"uniform:bits=3,group=32", 200},
    {"uniform:bits=8,group=128", 128},
    {"uniform:bits=5,group=16", 130},
    {"uniform:bits=3,group=10", 100},
    {"fp8", 96},
    {"fp8", 130},
    {"bf16", 64},
    {"residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256", 128},
    {"residual:m=3,meta=bf16,res=uniform:bits=2,group=64", 128},
    {"residual:m=2,meta=fp8,res=higgs:d=2,n=256", 130},
};

#ifdef KVO_HAVE_CUDA
using cuda::DeviceBuffer;

// x: (n, dim) bf16-representable values, uploaded with rows `stride` elements apart.
std::vector<uint8_t> encode_on_device(const Quantizer& q, const std::vector<float>& x, size_t n,
                                      size_t dim, size_t stride) {
  std::vector<uint16_t> bits(n * stride, 0x7fc0);  // NaN between rows: must never be read
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < dim; ++j) bits[i * stride + j] = float_to_bf16(x[i * dim + j]);
  DeviceBuffer<uint16_t> dx(bits);
  DeviceBuffer<uint8_t> out(q.encoded_bytes(n, dim));
  cuda::encode_bf16(q, dx.get(), int64_t(stride), n, dim, out.get(), nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return out.download();
}

struct Agreement {
  size_t codes = 0, differ = 0, near_ties = 0, other_bytes_differ = 0;
};

// HIGGS records code by code. A differing code counts as an exact near-tie when the CPU's
// ranking values of both points (grid.h) differ by at most 1e-6 (1 + ||y_t||^2).
Agreement compare_higgs(const HiggsQuantizer& q, const std::vector<float>& x, size_t n, size_t dim,
                        const std::vector<uint8_t>& gpu, const std::vector<uint8_t>& cpu) {
  Agreement a;
  const size_t rec = q.bytes_per_vector(dim), cb = q.codes_bytes(dim), T = q.tuples();
  const size_t G = q.groups(dim), h = q.group(), p = q.p();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* rg = gpu.data() + i * rec;
    const uint8_t* rc = cpu.data() + i * rec;
    if (std::memcmp(rg + cb, rc + cb, rec - cb) != 0) ++a.other_bytes_differ;
    for (size_t g = 0; g < G; ++g)
      for (size_t t = 0; t < T; ++t) {
        const size_t idx = g * T + t;
        auto code = [&](const uint8_t* r) {
          return q.code_bytes() == 1 ? uint32_t(r[idx])
                                     : uint32_t(r[2 * idx] | (r[2 * idx + 1] << 8));
        };
        ++a.codes;
        const uint32_t cg = code(rg), cc = code(rc);
        if (cg == cc) continue;
        ++a.differ;
        std::vector<float> y(h, 0.0f);
        for (size_t k = 0; k < h && g * h + k < dim; ++k) y[k] = x[i * dim + g * h + k];
        const float s = std::sqrt(canonical_sum_squares(y.data(), h));
        fwht(y.data(), h);
        float tuple[64] = {};
        for (size_t j = 0; j < p; ++j) tuple[j] = t * p + j < h && s > 0 ? y[t * p + j] / s : 0.0f;
        const float dg = q.grid().distance(tuple, cg), dc = q.grid().distance(tuple, cc);
        float y2 = 0;
        for (size_t j = 0; j < p; ++j) y2 += tuple[j] * tuple[j];
        if (std::fabs(dg - dc) <= 1e-6f * (1.0f + y2)) ++a.near_ties;
      }
  }
  return a;
}
#endif

TEST(DeviceQuantizer, SupportedFamilies) {
#ifdef KVO_HAVE_CUDA
  for (const auto& [spec, dim] : kSpecs)
    EXPECT_TRUE(cuda::device_supported(*parse_quantizer(spec))) << spec;
  EXPECT_FALSE(cuda::device_supported(
      *parse_quantizer("residual:m=2,meta=(residual:m=2,meta=bf16,res=bf16),res=bf16")));
#else
  GTEST_SKIP() << "no CUDA build";
#endif
}

TEST(DeviceQuantizer, EncodeBytesEqualCpu) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  for (const auto& [spec, dim] : kSpecs) {
    const QuantizerPtr q = parse_quantizer(spec);
    cuda::prepare(*q);
    const size_t n = 1001;
    const auto x = bf16_normal(n, dim, 41);
    const auto gpu = encode_on_device(*q, x, n, dim, dim + 8);
    const auto cpu = q->encode(x.data(), n, dim);
    ASSERT_EQ(gpu.size(), cpu.size()) << spec;
    if (const auto* h = dynamic_cast<const HiggsQuantizer*>(q.get())) {
      const Agreement a = compare_higgs(*h, x, n, dim, gpu, cpu);
      EXPECT_EQ(a.differ, a.near_ties) << spec;
      EXPECT_EQ(a.other_bytes_differ, 0u) << spec;
    } else {
      size_t differ = 0;
      for (size_t b = 0; b < cpu.size(); ++b) differ += gpu[b] != cpu[b];
      EXPECT_EQ(differ, 0u) << spec << ": " << differ << " of " << cpu.size() << " bytes";
    }
  }
#endif
}

// The fp8 encoder rounds bf16 inputs with the hardware's conversion: every one of the 65536
// bf16 values (NaN, infinities, subnormals and the saturating range included) must give the
// CPU's byte; bf16 records likewise (NaN quieted as on the CPU).
TEST(DeviceQuantizer, Fp8AndBf16EncodeEqualCpuOnEveryBf16Value) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  const size_t n = 512, dim = 128;
  std::vector<float> x(n * dim);
  for (size_t b = 0; b < x.size(); ++b) x[b] = bf16_to_float(uint16_t(b));
  for (const char* spec : {"fp8", "bf16"}) {
    const QuantizerPtr q = parse_quantizer(spec);
    const auto gpu = encode_on_device(*q, x, n, dim, dim);
    const auto cpu = q->encode(x.data(), n, dim);
    ASSERT_EQ(gpu.size(), cpu.size()) << spec;
    size_t differ = 0;
    for (size_t b = 0; b < cpu.size(); ++b)
      if (gpu[b] != cpu[b] && ++differ <= 8)
        ADD_FAILURE() << spec << ": byte " << b << " (input bits 0x" << std::hex
                      << (std::string(spec) == "fp8" ? b : b / 2) << std::dec << ") is "
                      << int(gpu[b]) << ", the CPU's " << int(cpu[b]);
    EXPECT_EQ(differ, 0u) << spec;
  }
#endif
}

TEST(DeviceQuantizer, HiggsCodesMatchCpuOnOneMillionVectors) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  size_t n = 1 << 20;
  if (const char* e = std::getenv("KVO_QUANT_CUDA_VECTORS")) n = std::strtoull(e, nullptr, 10);
  const size_t dim = 128;
  const auto x = bf16_normal(n, dim, 31);
  HiggsQuantizer q(4, 256);
  const Agreement a =
      compare_higgs(q, x, n, dim, encode_on_device(q, x, n, dim, dim), q.encode(x.data(), n, dim));
  std::printf(
      "[ higgs:d=4,n=256 ] %zu vectors, %zu codes: %zu differ (%zu exact near-ties), "
      "%zu vectors with differing scales\n",
      n, a.codes, a.differ, a.near_ties, a.other_bytes_differ);
  EXPECT_EQ(a.differ, a.near_ties);
  EXPECT_LT(double(a.near_ties), 1e-5 * double(a.codes));
  EXPECT_EQ(a.other_bytes_differ, 0u);
#endif
}

#ifdef KVO_HAVE_CUDA
// decode_rows_bf16 of a random row list (repeats included) from `records` (device or mapped
// host memory) against the CPU decode rounded to bf16, exact.
void expect_rows_decoded(const Quantizer& q, const std::vector<uint8_t>& cpu_bytes,
                         const uint8_t* records, size_t n, size_t dim, const std::string& what) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> pick(0, int32_t(n) - 1);
  std::vector<int32_t> rows(777);
  for (auto& r : rows) r = pick(rng);
  DeviceBuffer<int32_t> drows(rows);
  const size_t stride = dim + 4;
  DeviceBuffer<uint16_t> out(rows.size() * stride);
  cuda::decode_rows_bf16(q, records, n, drows.get(), rows.size(), dim, out.get(), int64_t(stride),
                         nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
  const auto got = out.download();
  std::vector<uint16_t> want(n * dim);
  q.decode_bf16(cpu_bytes.data(), n, dim, want.data());
  size_t differ = 0;
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t j = 0; j < dim; ++j) differ += got[i * stride + j] != want[rows[i] * dim + j];
  EXPECT_EQ(differ, 0u) << what << ": " << differ << " of " << rows.size() * dim << " values";
}
#endif

TEST(DeviceQuantizer, DecodeRowsEqualCpu) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  for (const auto& [spec, dim] : kSpecs) {
    const QuantizerPtr q = parse_quantizer(spec);
    const size_t n = 1001;
    const auto x = bf16_normal(n, dim, 43);
    const auto bytes = q->encode(x.data(), n, dim);
    DeviceBuffer<uint8_t> dbytes(bytes);
    expect_rows_decoded(*q, bytes, dbytes.get(), n, dim, spec);
  }
#endif
}

TEST(DeviceQuantizer, DecodeRowsFromMappedHostMemory) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  for (const std::string spec :
       {"higgs:d=4,n=256", "residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256", "fp8"}) {
    const QuantizerPtr q = parse_quantizer(spec);
    const size_t n = 4096, dim = 128;
    const auto x = bf16_normal(n, dim, 44);
    const auto bytes = q->encode(x.data(), n, dim);
    uint8_t* host = nullptr;
    ASSERT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&host), bytes.size(), cudaHostAllocMapped),
              cudaSuccess);
    std::memcpy(host, bytes.data(), bytes.size());
    expect_rows_decoded(*q, bytes, host, n, dim, spec + " (mapped host memory)");
    cudaFreeHost(host);
  }
#endif
}

#ifdef KVO_HAVE_CUDA
// score_heads of n_rows x (kv_heads * gqa) queries against n_keys keys per KV head equals
// scale * dot(q, cpu decode(key)) within 2e-5 of sum |q_j k_j|; returns the misses.
size_t score_heads_misses(int p, int npts, int grp, size_t dim, size_t n_rows, int kv_heads,
                          int gqa, size_t n_keys) {
  HiggsQuantizer q(p, npts, grp);
  const float scale = 0.125f;
  const int heads = kv_heads * gqa;
  const auto keys = bf16_normal(size_t(kv_heads) * n_keys, dim, 45);
  const auto query = bf16_normal(n_rows, size_t(heads) * dim, 46);
  const auto codes = q.encode(keys.data(), size_t(kv_heads) * n_keys, dim);
  std::vector<float> dec(size_t(kv_heads) * n_keys * dim);
  q.decode(codes.data(), size_t(kv_heads) * n_keys, dim, dec.data());
  std::vector<uint16_t> qbits(query.size());
  for (size_t i = 0; i < query.size(); ++i) qbits[i] = float_to_bf16(query[i]);
  DeviceBuffer<uint16_t> dq(qbits);
  DeviceBuffer<uint8_t> dk(codes);
  DeviceBuffer<float> ds(n_rows * size_t(heads) * n_keys);
  cuda::score_heads(q, dq.get(), int64_t(heads) * int64_t(dim), n_rows, heads, gqa, dk.get(),
                    n_keys, dim, scale, ds.get(), nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto got = ds.download();
  size_t bad = 0;
  for (size_t r = 0; r < n_rows; ++r)
    for (int hq = 0; hq < heads; ++hq)
      for (size_t k = 0; k < n_keys; ++k) {
        const float* qv = &query[(r * heads + hq) * dim];
        const float* kv = &dec[((hq / gqa) * n_keys + k) * dim];
        double dot = 0, mag = 0;
        for (size_t j = 0; j < dim; ++j) {
          dot += double(qv[j]) * kv[j];
          mag += std::fabs(double(qv[j]) * kv[j]);
        }
        const float g = got[(r * heads + hq) * n_keys + k];
        bad += !(std::fabs(g - scale * dot) <= scale * (2e-5 * mag + 1e-6));
      }
  return bad;
}
#endif

TEST(DeviceQuantizer, ScoreHeadsEqualsDotWithCpuDecode) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  // (d, n, group, dim): per-head records of 64 and 128 values, and groups spanning 1024 values
  // (scored in table slices). 1000 keys end in a part tile (the kernel stages 256 or more), 37
  // in a part of one warp's 32; 3 rows give query sets of one and two queries per block.
  const std::vector<std::tuple<int, int, int, size_t>> shapes = {
      {4, 256, 128, 128}, {4, 256, 128, 64},   {2, 256, 128, 128},   {2, 256, 128, 64},
      {8, 256, 128, 128}, {6, 4096, 128, 128}, {2, 256, 1024, 1024}, {4, 256, 1024, 1024}};
  for (auto [p, npts, grp, dim] : shapes)
    for (int gqa : {1, 4, 8})
      for (size_t n_keys : {1000, 37})
        EXPECT_EQ(score_heads_misses(p, npts, grp, dim, 3, 2, gqa, n_keys), 0u)
            << "d=" << p << " n=" << npts << " group " << grp << " dim " << dim << " gqa " << gqa
            << " keys " << n_keys;
#endif
}

TEST(DeviceQuantizer, ScoreHeadsStreamsManyTilesPerBlock) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  // So many queries that each block keeps one query set for all keys: several tiles through
  // the 512-key (d=4, two queries per block), 256-key (d=2) and sliced (group 1024) pipelines,
  // the last tile short; then one query per KV head over enough keys for 1024-key tiles.
  EXPECT_EQ(score_heads_misses(4, 256, 128, 128, 800, 1, 1, 2000), 0u);
  EXPECT_EQ(score_heads_misses(2, 256, 128, 128, 300, 1, 1, 2000), 0u);
  EXPECT_EQ(score_heads_misses(2, 256, 1024, 1024, 300, 1, 1, 1100), 0u);
  EXPECT_EQ(score_heads_misses(4, 256, 128, 128, 1, 64, 1, 4500), 0u);
#endif
}

TEST(DeviceQuantizer, ScoreHeadsRejectsRecordsOfSeveralGroups) {
  SKIP_WITHOUT_CUDA();
#ifdef KVO_HAVE_CUDA
  HiggsQuantizer q(4, 256, 64);
  EXPECT_THROW(cuda::score_heads(q, nullptr, 128, 1, 1, 1, nullptr, 1, 128, 1.0f, nullptr, nullptr),
               Error);
#endif
}

}  // namespace
}  // namespace kvo::quant
