// `kvoffload bench`: prefill and decode throughput at several prompt lengths, for one sequence or
// a batch of B sequences decoded together (engine/batch_generator.h), with where each sequence's
// KV cache lives (device, pinned host) and what a decode step moves over PCIe; with --roofline
// the decode step against the device's read bandwidth.
#include <unistd.h>

#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "engine/batch_generator.h"
#include "kv/kv_layout.h"
#include "util/error.h"
#ifdef KVO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace kvo::cli {
namespace {

struct BenchFlags {
  ModelOptions model;
  std::vector<int64_t> prompt_tokens{512, 2048, 8192};
  int gen = 64;
  int repeats = 1;
  int batch = 1;
  bool shared_prompt = false;
  bool eager = false;
  bool roofline = false;
  bool json = false;
};

// Token ids drawn uniformly from the vocabulary: speed does not depend on the text.
std::vector<int32_t> synthetic_prompt(int64_t n, int32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % uint64_t(vocab));
  return ids;
}

std::string gib(int64_t bytes) {
  const double b = double(bytes);
  return b >= double(int64_t{1} << 30) ? fmt::format("{:.2f} GiB", b / double(int64_t{1} << 30))
                                       : fmt::format("{:.1f} MiB", b / double(1 << 20));
}

// Pinned host memory the KV stores of a batch may take: 80% of physical memory, the rest left to
// the process and the system.
int64_t host_kv_limit() {
  return int64_t(double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE)) * 0.8);
}

// The batch for prompts of n tokens: `requested`, or the largest that fits when 0. Checked
// before anything is allocated, from what each sequence's policy allocates (plan_kv_footprint):
// the device must hold B sequences' KV caches, decode activations and recorded-step scratch plus
// one prefill's staging, on top of the prefill activations and a reserve for cuBLAS and the
// attention/sampling workspaces; pinned host memory must hold B sequences' offloaded stores.
struct BatchFit {
  int64_t batch = 0;
  int64_t largest = 0;
  std::string limit;  // "device" or "host": the memory that bounds `largest`
  std::string why;    // the largest batch, what limits it and the sizes behind it, in words
};

BatchFit fitting_batch(const WeightsRunner& r, const KvSpec& spec, int64_t n, int gen,
                       int64_t requested) {
  const KvFootprint kv = plan_kv_footprint(spec, r.config, n, n + gen, r.transformer->value_bytes(),
                                           r.backend->name() == "cuda");
  // Dense decodes through the backend's attention; the sparse policies through a workspace of
  // their own, which kv.gpu_bytes counts. The last term: a row of fp32 sampling scratch.
  const int64_t backend_attention_keys = spec.method == "dense" ? n + gen : 0;
  const int64_t per_sequence = kv.gpu_bytes + r.transformer->activation_bytes(1) +
                               r.transformer->recorded_step_bytes(backend_attention_keys) +
                               int64_t(r.config.vocab_size) * 4;
  const int64_t reserve = r.transformer->activation_bytes(r.backend->prefill_chunk_rows()) +
                          kv.prefill_gpu_bytes + (int64_t{1} << 30);
  const int64_t available = r.backend->available_bytes(), host = host_kv_limit();
  const int64_t device_fits = std::max<int64_t>(0, (available - reserve) / per_sequence);
  const int64_t host_fits =
      kv.cpu_bytes > 0 ? host / kv.cpu_bytes : std::numeric_limits<int64_t>::max();
  const int64_t fits = std::min(device_fits, host_fits);
  const std::string needs = fmt::format(
      "each sequence needs {} of device memory ({} of KV) and {} of pinned host memory; the device "
      "has {} available ({} kept for activations, workspaces and one prefill's staging) and the "
      "host allows {} (80% of its memory)",
      gib(per_sequence), gib(kv.gpu_bytes), gib(kv.cpu_bytes), gib(available), gib(reserve),
      gib(host));
  check(fits > 0, "a {}-token sequence does not fit: {}", n + gen, needs);
  const std::string limit = device_fits <= host_fits ? "device" : "host";
  check(requested <= fits,
        "--batch {} does not fit at {} prompt tokens: {}; the largest batch that fits is {} "
        "(limited by {} memory)",
        requested, n, needs, fits, limit);
  return {requested > 0 ? requested : fits, fits, limit,
          fmt::format("the largest batch that fits is {}, limited by {} memory: {}", fits, limit,
                      needs)};
}

void run_bench(const BenchFlags& f) {
  WeightsRunner runner = load_weights_runner(f.model);
  const ModelConfig& c = runner.config;
  Backend& backend = *runner.backend;
  const KvSpec spec = f.model.kv_spec();
  double bandwidth = 0;  // bytes/s of a plain read, for the roofline
  if (f.roofline) {
#ifdef KVO_HAVE_CUDA
    check(backend.name() == "cuda", "--roofline needs --device cuda");
    bandwidth = cuda_read_bandwidth(backend, int64_t{4} << 30);
#else
    fail("--roofline needs a CUDA build and --device cuda");
#endif
  }
  // Every length and batch is checked before anything runs.
  std::vector<std::pair<int64_t, BatchFit>> plan;  // (prompt tokens, batch) per requested length
  for (int64_t requested : f.prompt_tokens) {
    check(requested > 0, "--prompt-tokens must be positive");
    // A prompt must leave room for the generated tokens inside the model's context.
    const int64_t n = std::min<int64_t>(requested, c.max_context - f.gen);
    check(n > 0, "--gen {} leaves no room for a prompt in a {}-token context", f.gen,
          c.max_context);
    plan.emplace_back(n, fitting_batch(runner, spec, n, f.gen, f.batch));
  }
  if (!f.json) {
    std::printf("model %s (%s, %d layers, %s of weights), device %s, kv %s, %d generated tokens\n",
                runner.source.c_str(), arch_name(c.arch), c.num_layers,
                gib(runner.transformer->weight_bytes()).c_str(), backend.name().c_str(),
                spec.to_string().c_str(), f.gen);
    if (f.roofline)
      std::printf("read bandwidth (plain reduction, 4 GiB): %.1f GB/s\n", bandwidth / 1e9);
    if (f.shared_prompt)
      std::printf(
          "shared prompt: each length's prompt is prefilled once and its KV state copied "
          "into the other sequences of the batch (prompt prefilled once, KV copied); "
          "prefill tok/s is that one prefill\n");
    std::printf("%9s %8s %6s %14s %14s %14s %10s %9s %11s %11s %12s %10s%s\n", "requested",
                "prompt", "batch", "prefill tok/s", "decode tok/s", "per-seq tok/s", "step ms",
                "graphs", "KV GPU/seq", "KV CPU/seq", "PCIe MB/step", "PCIe GB/s",
                f.roofline ? "  roofline ms  % of roofline" : "");
  }
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < plan.size(); ++i) {
    const int64_t requested = f.prompt_tokens[i];
    const int64_t n = plan[i].first, B = plan[i].second.batch;
    if (!f.json) {
      std::printf("prompt %lld, batch %lld: %s\n", (long long)n, (long long)B,
                  plan[i].second.why.c_str());
      std::fflush(stdout);
    }
    BatchResult best;  // the run with the fastest decode
    double best_prefill = 0;
    KvMemoryReport kv_per_sequence;  // of the best run: sequence means (PCIe: of the decode steps)
    for (int rep = 0; rep < f.repeats; ++rep) {
      std::vector<std::unique_ptr<KvPolicy>> owned;
      std::vector<KvPolicy*> kvs;
      std::vector<std::vector<int32_t>> prompts;
      for (int64_t b = 0; b < B; ++b) {
        owned.push_back(make_kv_policy(backend, c, spec, n + f.gen));
        kvs.push_back(owned.back().get());
        prompts.push_back(
            synthetic_prompt(n, c.vocab_size, 1234 + rep * 1000 + (f.shared_prompt ? 0 : b)));
      }
      BatchOptions options;
      options.max_new_tokens = f.gen;
      options.record = !f.eager;
      options.shared_prompt = f.shared_prompt;
      BatchResult r = generate_batch(*runner.transformer, kvs, prompts, options);
      best_prefill = std::max(best_prefill, r.prefill_tokens_per_second());
      if (rep == 0 || r.decode_tokens_per_second() > best.decode_tokens_per_second()) {
        best = std::move(r);
        kv_per_sequence = KvMemoryReport();
        for (const KvPolicy* kv : kvs) {
          const KvMemoryReport m = kv->memory();
          kv_per_sequence.gpu_bytes += m.gpu_bytes / B;
          kv_per_sequence.cpu_bytes += m.cpu_bytes / B;
          kv_per_sequence.pcie_bytes_per_step += m.pcie_bytes_per_step / B;
        }
      }
    }
    // The steady-state step: the first decode step (which records the CUDA graph) is reported
    // apart as first_decode_step_ms and left out of the step time, tok/s and the roofline.
    const double step = best.decode_step_seconds();
    // PCIe throughput of the whole batch: every sequence's fetch in one step.
    const double pcie_gbps =
        step > 0 ? double(B * kv_per_sequence.pcie_bytes_per_step) / step / 1e9 : 0.0;
    // Bytes one step reads: the weights once, and each sequence's KV at its mean decode length.
    const int64_t kv_read = B * (n + f.gen / 2) * c.kv_bytes_per_token(2);
    const double roofline = double(runner.transformer->decode_weight_bytes() + kv_read) / bandwidth;
    nlohmann::json row = {{"requested_prompt_tokens", requested},
                          {"prompt_tokens", n},
                          {"batch", B},
                          {"largest_batch", plan[i].second.largest},
                          {"batch_limited_by", plan[i].second.limit},
                          {"generated_tokens", f.gen},
                          {"prefill_tokens_per_second", best_prefill},
                          {"decode_tokens_per_second", best.decode_tokens_per_second()},
                          {"decode_tokens_per_second_per_sequence", step > 0 ? 1.0 / step : 0.0},
                          {"decode_step_ms", step * 1e3},
                          {"first_decode_step_ms", best.first_step_seconds * 1e3},
                          {"recorded", best.recorded},
                          {"shared_prompt", f.shared_prompt},
                          {"kv_copy_seconds", best.copy_seconds},
                          {"kv_gpu_bytes_per_sequence", kv_per_sequence.gpu_bytes},
                          {"kv_cpu_bytes_per_sequence", kv_per_sequence.cpu_bytes},
                          {"pcie_bytes_per_step_per_sequence", kv_per_sequence.pcie_bytes_per_step},
                          {"pcie_gbps", pcie_gbps}};
    if (f.roofline) {
      row["bytes_per_step"] = runner.transformer->decode_weight_bytes() + kv_read;
      row["read_bandwidth_gbps"] = bandwidth / 1e9;
      row["roofline_step_ms"] = roofline * 1e3;
      row["fraction_of_roofline"] = step > 0 ? roofline / step : 0.0;
    }
    rows.push_back(row);
    if (!f.json) {
      std::printf("%9lld %8lld %6lld %14.1f %14.1f %14.2f %10.3f %9s %11s %11s %12.1f %10.2f",
                  (long long)requested, (long long)n, (long long)B, best_prefill,
                  best.decode_tokens_per_second(), step > 0 ? 1.0 / step : 0.0, step * 1e3,
                  best.recorded ? "yes" : "no", gib(kv_per_sequence.gpu_bytes).c_str(),
                  gib(kv_per_sequence.cpu_bytes).c_str(),
                  double(kv_per_sequence.pcie_bytes_per_step) / 1e6, pcie_gbps);
      if (f.roofline) std::printf("  %11.3f  %13.1f", roofline * 1e3, 100.0 * roofline / step);
      std::printf("\n");
      if (f.gen > 2)
        std::printf("    (step ms: mean of the %d steps after the first, which took %.3f ms%s)\n",
                    f.gen - 2, best.first_step_seconds * 1e3,
                    best.recorded ? " and recorded the step" : "");
      if (f.shared_prompt && B > 1)
        std::printf("    (the prompt's KV state copied %lld times in %.1f s)\n", (long long)(B - 1),
                    best.copy_seconds);
      std::fflush(stdout);
    }
  }
  if (f.json) {
    nlohmann::json out = {{"model", runner.source},
                          {"device", backend.name()},
                          {"kv", spec.to_string()},
                          {"threads", f.model.threads},
                          {"results", rows}};
    std::printf("%s\n", out.dump(2).c_str());
  }
}

std::function<void()> make_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Measure prefill and decode tokens/s at several prompt lengths and batch sizes");
  f->model.add_to(*cmd, /*with_random_weights=*/true);
  cmd->add_option("--prompt-tokens", f->prompt_tokens,
                  "Comma-separated prompt lengths (random token ids); each is capped at context - "
                  "--gen")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--gen", f->gen, "Tokens to generate per sequence (decode speed)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--batch", f->batch,
                  "Sequences decoded together; 0 = the largest batch that fits the device memory")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--shared-prompt", f->shared_prompt,
                "Prefill one prompt per length and copy its KV state into every other sequence of "
                "the batch (the same prompt for all), so large batches at long prompts can be "
                "decoded without B prefills");
  cmd->add_option("--repeats", f->repeats, "Runs per length; the best is reported")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--eager", f->eager, "Queue every decode step instead of replaying a recording");
  cmd->add_flag("--roofline", f->roofline,
                "CUDA: measure the read bandwidth of a plain reduction and report each decode step "
                "against bytes read per step (weights + KV) / that bandwidth");
  cmd->add_flag("--json", f->json, "Print results as JSON");
  return [f] { run_bench(*f); };
}

}  // namespace
KVO_REGISTER_COMMAND("bench", make_bench);
}  // namespace kvo::cli
