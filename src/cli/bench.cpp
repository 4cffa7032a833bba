// `kvoffload bench`: prefill and decode throughput of one sequence at several prompt lengths.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "engine/generator.h"
#include "util/error.h"

namespace kvo::cli {
namespace {

struct BenchFlags {
  ModelOptions model;
  std::vector<int64_t> prompt_tokens{512, 2048, 8192};
  int gen = 64;
  int repeats = 1;
  bool json = false;
};

// Token ids drawn uniformly from the vocabulary: speed does not depend on the text.
std::vector<int32_t> synthetic_prompt(int64_t n, int32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % uint64_t(vocab));
  return ids;
}

void run_bench(const BenchFlags& f) {
  LoadedRunner runner = load_runner(f.model);
  const ModelConfig& c = runner.model.config;
  nlohmann::json rows = nlohmann::json::array();
  if (!f.json) {
    std::printf("model %s (%s, %d layers), device %s, kv %s, %d generated tokens\n",
                f.model.model_path.c_str(), arch_name(c.arch), c.num_layers,
                runner.backend->name().c_str(), f.model.kv_method.c_str(), f.gen);
    std::printf("%12s %12s %16s %16s\n", "requested", "prompt", "prefill tok/s", "decode tok/s");
  }
  for (int64_t requested : f.prompt_tokens) {
    check(requested > 0, "--prompt-tokens must be positive");
    // A prompt must leave room for the generated tokens inside the model's context.
    const int64_t n = std::min<int64_t>(requested, c.max_context - f.gen);
    check(n > 0, "--gen {} leaves no room for a prompt in a {}-token context", f.gen,
          c.max_context);
    double best_prefill = 0, best_decode = 0;
    for (int rep = 0; rep < f.repeats; ++rep) {
      auto kv = make_kv_policy(f.model, runner, n + f.gen);
      GenerationOptions options;
      options.max_new_tokens = f.gen;
      options.ignore_eos = true;
      const auto prompt = synthetic_prompt(n, c.vocab_size, 1234 + rep);
      GenerationResult r =
          generate(*runner.transformer, runner.model.tokenizer, *kv, prompt, options);
      best_prefill = std::max(best_prefill, r.prefill_tokens_per_second());
      best_decode = std::max(best_decode, r.decode_tokens_per_second());
    }
    rows.push_back({{"requested_prompt_tokens", requested},
                    {"prompt_tokens", n},
                    {"generated_tokens", f.gen},
                    {"prefill_tokens_per_second", best_prefill},
                    {"decode_tokens_per_second", best_decode}});
    if (!f.json) {
      std::printf("%12lld %12lld %16.1f %16.2f\n", static_cast<long long>(requested),
                  static_cast<long long>(n), best_prefill, best_decode);
      std::fflush(stdout);
    }
  }
  if (f.json) {
    nlohmann::json out = {{"model", f.model.model_path},
                          {"device", runner.backend->name()},
                          {"kv", f.model.kv_method},
                          {"threads", f.model.threads},
                          {"results", rows}};
    std::printf("%s\n", out.dump(2).c_str());
  }
}

std::function<void()> make_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Measure prefill and decode tokens/s at several prompt lengths (batch 1)");
  f->model.add_to(*cmd);
  cmd->add_option("--prompt-tokens", f->prompt_tokens,
                  "Comma-separated prompt lengths; each is capped at context - --gen")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--gen", f->gen, "Tokens to generate per length (decode speed)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--repeats", f->repeats, "Runs per length; the best is reported")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", f->json, "Print results as JSON");
  return [f] { run_bench(*f); };
}

}  // namespace
KVO_REGISTER_COMMAND("bench", make_bench);
}  // namespace kvo::cli
