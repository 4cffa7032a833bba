// Every CUDA backend op against the CPU backend on the same random inputs (rounded to bf16 first,
// so both sides see identical values). The CUDA side stores bf16: results are compared by
// ||cuda - cpu|| / ||cpu|| with a bf16 tolerance (one rounding of the output is 2^-9 relative;
// 1e-2 leaves room for fp32 summation order). Skipped where no GPU is present.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

namespace kvo {
namespace {

std::unique_ptr<Backend> cuda_or_null() {
  auto b = make_backend("auto", 0);
  return b->name() == "cuda" ? std::move(b) : nullptr;
}

#define REQUIRE_CUDA(var)    \
  auto var = cuda_or_null(); \
  if (!var) GTEST_SKIP() << "no CUDA GPU in this build/machine"

float round_bf16(float x) {
  return bf16_to_f32(f32_to_bf16(x));
}

std::vector<float> random_bf16(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = round_bf16(dist(rng));
  return v;
}

HostTensor host(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return HostTensor::owned_f32({rows, cols}, v);
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += double(got[i] - ref[i]) * (got[i] - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Runs `op` on both backends over the same uploaded inputs and compares tensor `out_index`.
struct Pair {
  std::unique_ptr<Backend> cuda = cuda_or_null();
  std::unique_ptr<Backend> cpu = make_cpu_backend(0);
};

TEST(CudaOps, UploadConvertsEveryHostDtypeAndDownloadReturnsFp32) {
  REQUIRE_CUDA(cuda);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  const int64_t rows = 37, cols = 129;
  std::vector<float> f32(rows * cols);
  for (float& x : f32) x = dist(rng);
  auto a = cuda->upload(host(f32, rows, cols));
  EXPECT_EQ(a.tensor().dtype, DType::BF16);
  auto back = cuda->download(a.tensor());
  for (size_t i = 0; i < f32.size(); ++i) ASSERT_EQ(back[i], round_bf16(f32[i])) << i;

  auto f16_buf = std::make_shared<std::vector<uint16_t>>(f32.size());
  auto bf16_buf = std::make_shared<std::vector<uint16_t>>(f32.size());
  for (size_t i = 0; i < f32.size(); ++i) {
    (*f16_buf)[i] = f32_to_f16(f32[i]);
    (*bf16_buf)[i] = f32_to_bf16(f32[i]);
  }
  HostTensor h16{DType::F16, {rows, cols}, f16_buf->data(), f16_buf};
  HostTensor hb16{DType::BF16, {rows, cols}, bf16_buf->data(), bf16_buf};
  auto b = cuda->download(cuda->upload(h16).tensor());
  auto c = cuda->download(cuda->upload(hb16).tensor());
  for (size_t i = 0; i < f32.size(); ++i) {
    ASSERT_EQ(b[i], round_bf16(f16_to_f32((*f16_buf)[i]))) << i;
    ASSERT_EQ(c[i], bf16_to_f32((*bf16_buf)[i])) << i;
  }
  // A 1-D weight uploads as one row.
  auto w = cuda->upload(HostTensor::owned_f32({5}, {1, 2, 3, 4, 5}));
  EXPECT_EQ(w.tensor().rows, 1);
  EXPECT_EQ(w.tensor().cols, 5);
}

TEST(CudaOps, CopyAndDownloadHandleStridedViews) {
  REQUIRE_CUDA(cuda);
  const int64_t rows = 9, cols = 24;
  auto x = random_bf16(rows * cols, 2);
  auto src = cuda->upload(host(x, rows, cols));
  auto dst = cuda->alloc(rows, 2 * cols);
  cuda->copy(cuda->upload(host(std::vector<float>(rows * 2 * cols, 0.0f), rows, 2 * cols)).tensor(),
             dst.tensor());
  // Columns [8, 16) of src into columns [32, 40) of dst, rows 2..7.
  Tensor s = src.tensor().row_range(2, 6), d = dst.tensor().row_range(2, 6);
  s.data = static_cast<char*>(s.data) + 8 * 2;
  s.cols = 8;
  d.data = static_cast<char*>(d.data) + 32 * 2;
  d.cols = 8;
  cuda->copy(s, d);
  auto got = cuda->download(dst.tensor());
  auto view = cuda->download(s);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < 2 * cols; ++c) {
      const bool in = r >= 2 && r < 8 && c >= 32 && c < 40;
      ASSERT_EQ(got[r * 2 * cols + c], in ? x[r * cols + (c - 24)] : 0.0f) << r << "," << c;
    }
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 8; ++c) ASSERT_EQ(view[r * 8 + c], x[(r + 2) * cols + 8 + c]);
}

TEST(CudaOps, EmbeddingGathersRowsAndRejectsBadIds) {
  Pair p;
  if (!p.cuda) GTEST_SKIP() << "no CUDA GPU";
  const int64_t vocab = 50, cols = 72;
  auto table = random_bf16(vocab * cols, 3);
  auto t = p.cuda->upload(host(table, vocab, cols));
  std::vector<int32_t> ids = {0, 49, 7, 7, 23};
  auto out = p.cuda->alloc(int64_t(ids.size()), cols);
  p.cuda->embedding(ids, t.tensor(), out.tensor());
  auto got = p.cuda->download(out.tensor());
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(got[i * cols + c], table[ids[i] * cols + c]);
  std::vector<int32_t> bad = {50};
  EXPECT_THROW(p.cuda->embedding(bad, t.tensor(), out.tensor().row_range(0, 1)), Error);
}

void expect_close(const std::vector<float>& got, const std::vector<float>& ref, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), ref.size());
  const double err = rel_l2(got, ref);
  EXPECT_LE(err, tol) << what;
  std::printf("  %-40s rel_l2 %.2e\n", what.c_str(), err);
}

TEST(CudaOps, RmsnormMatchesCpuOnRowsAndPerHead) {
  Pair p;
  if (!p.cuda) GTEST_SKIP() << "no CUDA GPU";
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{33, 576}, {5, 100}, {300, 64}, {7, 4096}}) {
    auto x = random_bf16(rows * cols, 4, 2.0f), w = random_bf16(cols, 5);
    std::vector<std::vector<float>> outs;
    for (Backend* b : {p.cpu.get(), p.cuda.get()}) {
      auto xd = b->upload(host(x, rows, cols)), wd = b->upload(host(w, 1, cols));
      auto out = b->alloc(rows, cols);
      b->rmsnorm(xd.tensor(), wd.tensor(), 1e-6f, out.tensor());
      outs.push_back(b->download(out.tensor()));
      // In place on the per-head view, as Qwen3's q/k-norm does.
      b->rmsnorm(xd.tensor(), wd.tensor(), 1e-6f, xd.tensor());
      outs.push_back(b->download(xd.tensor()));
    }
    expect_close(outs[2], outs[0], 1e-2, fmt::format("rmsnorm {}x{}", rows, cols));
    expect_close(outs[3], outs[1], 1e-2, fmt::format("rmsnorm in place {}x{}", rows, cols));
  }
}

TEST(CudaOps, MatmulMatchesCpuWithAndWithoutBias) {
  Pair p;
  if (!p.cuda) GTEST_SKIP() << "no CUDA GPU";
  struct S {
    int64_t n, in, out;
    bool bias;
  };
  for (S s : {S{7, 33, 19, true}, S{1, 576, 1536, false}, S{128, 1024, 512, true},
              S{300, 576, 49152 / 16, false}, S{1, 4096, 4096, true},
              // Decode rows (1, 2): the matvec kernel; 3-8: cuBLAS, odd feature counts, long rows,
              // bias; one row of a 14336-long input, and fewer features than a block's warps.
              S{3, 4096, 1000, true}, S{8, 14336, 520, false}, S{5, 64, 24, true},
              S{2, 1032, 7, false}, S{1, 14336, 523, true}, S{1, 64, 24, true}}) {
    auto x = random_bf16(s.n * s.in, 6), w = random_bf16(s.out * s.in, 7, 0.05f),
         bias = random_bf16(s.out, 8);
    std::vector<std::vector<float>> outs;
    for (Backend* b : {p.cpu.get(), p.cuda.get()}) {
      auto xd = b->upload(host(x, s.n, s.in)), wd = b->upload(host(w, s.out, s.in));
      auto bd = b->upload(host(bias, 1, s.out));
      auto out = b->alloc(s.n, s.out);
      const Tensor bt = bd.tensor();
      b->matmul(xd.tensor(), wd.tensor(), s.bias ? &bt : nullptr, out.tensor());
      outs.push_back(b->download(out.tensor()));
    }
    expect_close(outs[1], outs[0], 1e-2,
                 fmt::format("matmul {}x{} * {}^T{}", s.n, s.in, s.out, s.bias ? " + bias" : ""));
  }
}

TEST(CudaOps, RopeMatchesCpuInBothLayoutsAtLongPositions) {
  Pair p;
  if (!p.cuda) GTEST_SKIP() << "no CUDA GPU";
  for (int D : {64, 128}) {
    for (bool adjacent : {false, true}) {
      const int heads = 4;
      const int64_t T = 6;
      RopeParams rope;
      for (int i = 0; i < D / 2; ++i) rope.inv_freq.push_back(std::pow(500000.0f, -2.0f * i / D));
      rope.adjacent_pairs = adjacent;
      std::vector<int32_t> positions = {0, 1, 17, 4095, 32767, 131071};
      auto x = random_bf16(T * heads * D, 9);
      std::vector<std::vector<float>> outs;
      for (Backend* b : {p.cpu.get(), p.cuda.get()}) {
        auto xd = b->upload(host(x, T, heads * D));
        b->rope(xd.tensor(), positions, D, rope);
        outs.push_back(b->download(xd.tensor()));
      }
      expect_close(outs[1], outs[0], 1e-2, fmt::format("rope D={} adjacent={}", D, adjacent));
    }
  }
}

TEST(CudaOps, SwigluAndAddMatchCpu) {
  Pair p;
  if (!p.cuda) GTEST_SKIP() << "no CUDA GPU";
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{17, 1536}, {3, 101}}) {
    auto g = random_bf16(rows * cols, 10, 3.0f), u = random_bf16(rows * cols, 11);
    std::vector<std::vector<float>> outs;
    for (Backend* b : {p.cpu.get(), p.cuda.get()}) {
      auto gd = b->upload(host(g, rows, cols)), ud = b->upload(host(u, rows, cols));
      auto out = b->alloc(rows, cols);
      b->swiglu(gd.tensor(), ud.tensor(), out.tensor());
      outs.push_back(b->download(out.tensor()));
      b->swiglu(gd.tensor(), ud.tensor(), gd.tensor());  // in place, like the forward pass
      outs.push_back(b->download(gd.tensor()));
      b->add(ud.tensor(), out.tensor());
      outs.push_back(b->download(ud.tensor()));
    }
    expect_close(outs[3], outs[0], 1e-2, fmt::format("swiglu {}x{}", rows, cols));
    expect_close(outs[4], outs[1], 1e-2, fmt::format("swiglu in place {}x{}", rows, cols));
    expect_close(outs[5], outs[2], 1e-2, fmt::format("add {}x{}", rows, cols));
  }
}

TEST(CudaOps, AllocFreeReusesMemoryAndSynchronizeWaits) {
  REQUIRE_CUDA(cuda);
  void* first = nullptr;
  {
    auto a = cuda->alloc(1000, 1000);
    first = a.tensor().data;
  }
  auto b = cuda->alloc(1000, 1000);
  EXPECT_EQ(b.tensor().data, first);  // served from the free list, no cudaMalloc
  cuda->synchronize();
}

TEST(CudaOps, DeviceSelection) {
  // "cpu" is always the CPU; "auto" is CUDA exactly when a GPU is usable.
  EXPECT_EQ(make_backend("cpu", 1)->name(), "cpu");
  auto autob = make_backend("auto", 1);
  if (autob->name() == "cuda") {
    EXPECT_EQ(make_backend("cuda", 1)->name(), "cuda");
  } else {
    EXPECT_THROW(make_backend("cuda", 1), Error);
  }
  EXPECT_THROW(make_backend("tpu", 1), Error);
}

}  // namespace
}  // namespace kvo
