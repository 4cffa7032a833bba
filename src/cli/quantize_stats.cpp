// `kvoffload quantize-stats`: bits per value and MSE per value of a quantizer spec on
// standard-normal vectors; with --device cuda the encode runs on the GPU (device_quantizer.h,
// which takes bf16 rows, so the samples are rounded to bf16 first), and --bench adds the kernel
// throughputs next to a plain read-bandwidth kernel.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/commands.h"
#include "quant/device.h"
#include "quant/grid.h"
#include "quant/higgs.h"
#include "quant/residual.h"
#include "quant/spec.h"
#include "util/error.h"
#ifdef KVO_HAVE_CUDA
#include "quant/cuda/bench.h"
#include "quant/cuda/device_buffer.h"
#include "quant/cuda/device_quantizer.h"
#endif

namespace kvo::cli {
namespace {

struct StatsFlags {
  std::string spec, device = "cpu", grid_dir;
  size_t samples = 4096, dim = 0, bench_vectors = 0;
  uint64_t seed = 1;
  bool json = false, bench = false;
};

// Vectors long enough to hold whole Hadamard groups, so padding does not skew the figures.
size_t default_dim(const quant::Quantizer& q) {
  if (auto* h = dynamic_cast<const quant::HiggsQuantizer*>(&q))
    return std::max<size_t>(128, size_t(h->group()));
  if (auto* r = dynamic_cast<const quant::ResidualQuantizer*>(&q))
    return std::max(default_dim(r->meta()), default_dim(r->res()));
  return 128;
}

#ifdef KVO_HAVE_CUDA
// x: (n, dim) values already representable in bf16 -> the records encode_bf16 writes.
std::vector<uint8_t> encode_on_device(const quant::Quantizer& q, const std::vector<float>& x,
                                      size_t n, size_t dim) {
  std::vector<uint16_t> bits(x.size());
  for (size_t i = 0; i < x.size(); ++i) bits[i] = quant::float_to_bf16(x[i]);
  const quant::cuda::DeviceBuffer<uint16_t> dx(bits);
  const quant::cuda::DeviceBuffer<uint8_t> out(q.encoded_bytes(n, dim));
  quant::cuda::encode_bf16(q, dx.get(), int64_t(dim), n, dim, out.get(), nullptr);
  return out.download();
}
#endif

void run_stats(const StatsFlags& f) {
  check(f.device == "cpu" || f.device == "cuda", "--device must be cpu or cuda, got '{}'",
        f.device);
  if (!f.grid_dir.empty()) quant::set_grid_dir(f.grid_dir);
  const quant::QuantizerPtr q = quant::parse_quantizer(f.spec);
  const size_t dim = f.dim ? f.dim : default_dim(*q);
  check(f.samples > 0, "--samples must be positive");
  if (f.device == "cuda") {
    std::string why;
    check(quant::cuda_device_available(&why), "--device cuda: {}", why);
#ifdef KVO_HAVE_CUDA
    check(quant::cuda::device_supported(*q), "--device cuda: no CUDA kernels for '{}'", q->spec());
#endif
  }
  check(!f.bench || f.device == "cuda", "--bench needs --device cuda");

  std::mt19937_64 rng(f.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(f.samples * dim), y(f.samples * dim);
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> bytes;
#ifdef KVO_HAVE_CUDA
  if (f.device == "cuda") {
    for (float& v : x) v = quant::bf16_to_float(quant::float_to_bf16(v));
    bytes = encode_on_device(*q, x, f.samples, dim);
  }
#endif
  if (f.device == "cpu") bytes = q->encode(x.data(), f.samples, dim);
  q->decode(bytes.data(), f.samples, dim, y.data());
  double se = 0.0;
  for (size_t i = 0; i < x.size(); ++i) se += double(x[i] - y[i]) * double(x[i] - y[i]);
  const double mse = se / double(x.size());
  const double bits = 8.0 * double(bytes.size()) / double(x.size());

  nlohmann::json out = {{"quantizer", q->spec()}, {"dim", dim},
                        {"samples", f.samples},   {"device", f.device},
                        {"bits_per_value", bits}, {"mse_per_value", mse}};
#ifdef KVO_HAVE_CUDA
  if (f.bench) {
    // Default: 2 GiB of bf16 input, many times the 60 MB L2 of an H200.
    const size_t nv = f.bench_vectors ? f.bench_vectors : (size_t(1) << 30) / dim;
    const auto r = quant::cuda::bench_quantizer(*q, nv, 4 * nv, dim);
    out["bench"] = {{"gpu", r.device},
                    {"input", "bf16"},
                    {"encode_vectors", r.n_encode},
                    {"score_keys", r.n_score},
                    {"read_gbs", r.read_gbs},
                    {"encode_gbs", r.encode_gbs},
                    {"score_gbs", r.score_gbs},
                    {"score_gqa8_gbs", r.score_gqa8_gbs},
                    {"decode_bf16_gbs", r.decode_gbs},
                    {"read_ms", r.read_ms},
                    {"encode_ms", r.encode_ms},
                    {"score_ms", r.score_ms},
                    {"score_gqa8_ms", r.score_gqa8_ms},
                    {"decode_ms", r.decode_ms}};
  }
#endif
  if (f.json) {
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("%s  dim %zu  samples %zu  device %s\nbits/value %.4f  mse/value %.5f\n",
              q->spec().c_str(), dim, f.samples, f.device.c_str(), bits, mse);
  if (out.contains("bench")) {
    const auto& b = out["bench"];
    const double read = b["read_gbs"];
    const double enc = b["encode_gbs"], sc = b["score_gbs"], dec = b["decode_bf16_gbs"];
    std::printf(
        "%s: read %.0f GB/s | encode %.0f GB/s of bf16 input (%.0f%%) | score %.0f GB/s "
        "of codes (%.0f%%) | decode->bf16 %.0f GB/s of codes\n",
        std::string(b["gpu"]).c_str(), read, enc, 100 * enc / read, sc, 100 * sc / read, dec);
  }
}

std::function<void()> make_quantize_stats(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize-stats", "Bits and MSE per value of a quantizer on standard-normal vectors");
  auto f = std::make_shared<StatsFlags>();
  cmd->add_option("--quantizer", f->spec,
                  "Quantizer spec, e.g. higgs:d=4,n=256 or residual:m=4,meta=...,res=...")
      ->required();
  cmd->add_option("--samples", f->samples, "Number of random vectors (default 4096)");
  cmd->add_option("--dim", f->dim, "Vector dimension (default: 128, or the Hadamard group)");
  cmd->add_option("--device", f->device, "cpu or cuda (encode on the GPU, bf16-rounded samples)");
  cmd->add_option("--seed", f->seed, "Random seed");
  cmd->add_option("--grid-dir", f->grid_dir, "Folder of the EDEN*.txt grids");
  cmd->add_flag("--json", f->json, "Print one JSON object");
  cmd->add_flag("--bench", f->bench, "Also time the CUDA kernels (needs --device cuda)");
  cmd->add_option("--bench-vectors", f->bench_vectors,
                  "Vectors encoded per benchmark launch (default: 2 GiB of bf16 input)");
  return [f] { run_stats(*f); };
}

}  // namespace
KVO_REGISTER_COMMAND("quantize-stats", make_quantize_stats);
}  // namespace kvo::cli
