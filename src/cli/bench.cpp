// `kvoffload bench`: prefill and decode throughput at several prompt lengths, for one sequence or
// a batch of B sequences decoded together (engine/batch_generator.h), with --roofline the decode
// step against the device's read bandwidth.
#include <cstdio>
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

// The batch for prompts of n tokens: `requested`, or the largest that fits when 0. Checked
// before anything is allocated: each sequence's KV cache (plan_kv_layout, the policies' own
// sizing) and decode activations, on top of the prefill activations, must fit what the backend
// can still allocate, less a reserve for cuBLAS and the attention/sampling workspaces.
int64_t fitting_batch(const WeightsRunner& r, const KvSpec& spec, int64_t n, int gen,
                      int64_t requested) {
  const int64_t kv =
      plan_kv_layout(spec, r.config, n, n + gen, r.transformer->value_bytes()).gpu_bytes();
  // Device blocks are rounded up to 2 MiB: dense holds two blocks (all keys, all values); allow
  // two per layer for the sparse policies' per-layer arrays.
  const int64_t blocks = spec.method == "dense" ? 2 : 2 * int64_t{r.config.num_layers};
  const int64_t per_sequence = kv + blocks * (int64_t{2} << 20) +
                               r.transformer->activation_bytes(1) +
                               int64_t(r.config.vocab_size) * 4;  // + sampling scratch
  const int64_t reserve = r.transformer->activation_bytes(512) + (int64_t{1} << 30);
  const int64_t available = r.backend->available_bytes();
  const int64_t fits = std::max<int64_t>(0, (available - reserve) / per_sequence);
  check(fits > 0,
        "a {}-token sequence does not fit: its KV cache takes {} and {} is available (with {} "
        "kept for activations and workspaces)",
        n + gen, gib(kv), gib(available), gib(reserve));
  check(
      requested <= fits,
      "--batch {} does not fit at {} prompt tokens: each sequence needs {} ({} of KV) and {} is "
      "available (with {} kept for activations and workspaces); the largest batch that fits is {}",
      requested, n, gib(per_sequence), gib(kv), gib(available), gib(reserve), fits);
  return requested > 0 ? requested : fits;
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
  std::vector<std::pair<int64_t, int64_t>> plan;  // (prompt tokens, batch) per requested length
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
    std::printf("%9s %8s %6s %14s %14s %14s %10s %9s%s\n", "requested", "prompt", "batch",
                "prefill tok/s", "decode tok/s", "per-seq tok/s", "step ms", "graphs",
                f.roofline ? "  roofline ms  % of roofline" : "");
  }
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < plan.size(); ++i) {
    const int64_t requested = f.prompt_tokens[i];
    const auto [n, B] = plan[i];
    BatchResult best;  // the run with the fastest decode
    double best_prefill = 0;
    for (int rep = 0; rep < f.repeats; ++rep) {
      std::vector<std::unique_ptr<KvPolicy>> owned;
      std::vector<KvPolicy*> kvs;
      std::vector<std::vector<int32_t>> prompts;
      for (int64_t b = 0; b < B; ++b) {
        owned.push_back(make_kv_policy(backend, c, spec, n + f.gen));
        kvs.push_back(owned.back().get());
        prompts.push_back(synthetic_prompt(n, c.vocab_size, 1234 + rep * 1000 + b));
      }
      BatchOptions options;
      options.max_new_tokens = f.gen;
      options.record = !f.eager;
      BatchResult r = generate_batch(*runner.transformer, kvs, prompts, options);
      best_prefill = std::max(best_prefill, r.prefill_tokens_per_second());
      if (rep == 0 || r.decode_tokens_per_second() > best.decode_tokens_per_second())
        best = std::move(r);
    }
    const double step = best.decode_step_seconds();
    // Bytes one step reads: the weights once, and each sequence's KV at its mean decode length.
    const int64_t kv_read = B * (n + f.gen / 2) * c.kv_bytes_per_token(2);
    const double roofline = double(runner.transformer->decode_weight_bytes() + kv_read) / bandwidth;
    nlohmann::json row = {{"requested_prompt_tokens", requested},
                          {"prompt_tokens", n},
                          {"batch", B},
                          {"generated_tokens", f.gen},
                          {"prefill_tokens_per_second", best_prefill},
                          {"decode_tokens_per_second", best.decode_tokens_per_second()},
                          {"decode_tokens_per_second_per_sequence", step > 0 ? 1.0 / step : 0.0},
                          {"decode_step_ms", step * 1e3},
                          {"recorded", best.recorded}};
    if (f.roofline) {
      row["bytes_per_step"] = runner.transformer->decode_weight_bytes() + kv_read;
      row["read_bandwidth_gbps"] = bandwidth / 1e9;
      row["roofline_step_ms"] = roofline * 1e3;
      row["fraction_of_roofline"] = step > 0 ? roofline / step : 0.0;
    }
    rows.push_back(row);
    if (!f.json) {
      std::printf("%9lld %8lld %6lld %14.1f %14.1f %14.2f %10.3f %9s", (long long)requested,
                  (long long)n, (long long)B, best_prefill, best.decode_tokens_per_second(),
                  step > 0 ? 1.0 / step : 0.0, step * 1e3, best.recorded ? "yes" : "no");
      if (f.roofline) std::printf("  %11.3f  %13.1f", roofline * 1e3, 100.0 * roofline / step);
      std::printf("\n");
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
