// Flags shared by every subcommand that runs a model: --model, --device, --threads, and the KV
// policy: --kv METHOD plus its knobs (--budget, --sinks, --group-agg, --local, --chunk, --page,
// --outliers, --rank, --landmarks, --kv-store; meanings and defaults in kv/kv_spec.h).
//
// Building a policy without the CLI (e.g. the eval harness): either
//   make_kv_policy(backend, config, KvSpec::from_knobs("yakv", {{"budget", "0.03"}}), capacity)
//   make_kv_policy(backend, config, KvSpec::parse("yakv:budget=0.03,chunk=1"), capacity)
// (kv/kv_policy.h), or make_kv_policy(ModelOptions, runner, capacity) below.
#pragma once
#include <CLI/CLI.hpp>
#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "kv/kv_policy.h"
#include "kv/kv_spec.h"
#include "model/model.h"
#include "model/transformer.h"

namespace kvo::cli {

// Adds --kv and the knob flags to `cmd`; knob values land in `knobs` (name -> value; absent or
// empty = the method's default).
void add_kv_options(CLI::App& cmd, std::string& method, std::map<std::string, std::string>& knobs);
// The KvSpec of those flags (kvo::Error for bad values or knobs that do not apply), resolved.
KvSpec kv_spec_from_flags(const std::string& method,
                          const std::map<std::string, std::string>& knobs);

// Adds --random-weights CONFIG (an HF config.json or a folder holding one): the model of that
// config with random weights (model/random_weights.h), for commands that need no tokenizer.
// It excludes `model` (the command's model path option).
CLI::Option* add_random_weights_option(CLI::App& cmd, std::string& config_path, CLI::Option* model);

struct ModelOptions {
  std::string model_path;
  std::string random_weights;  // config path, when the command takes --random-weights
  std::string device = "auto";
  int threads = 0;
  int64_t context = 0;  // --context: overrides the model's context length when > 0
  std::string kv_method = "dense";
  std::map<std::string, std::string> kv_knobs;

  // with_random_weights: the command runs without text, so --random-weights may replace --model.
  void add_to(CLI::App& cmd, bool with_random_weights = false);
  KvSpec kv_spec() const { return kv_spec_from_flags(kv_method, kv_knobs); }
};

// Everything needed to run a model, loaded in dependency order.
struct LoadedRunner {
  Model model;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Transformer> transformer;
};
LoadedRunner load_runner(const ModelOptions& options);

// A model run without text in or out (bench): the weights of --model or of --random-weights,
// uploaded to the backend (the host copies are dropped).
struct WeightsRunner {
  ModelConfig config;
  std::string source;  // the model path, or "random weights from CONFIG"
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Transformer> transformer;
};
WeightsRunner load_weights_runner(const ModelOptions& options);

// A KV policy for one sequence of at most `capacity` tokens, from --kv and its knobs.
std::unique_ptr<KvPolicy> make_kv_policy(const ModelOptions& options, LoadedRunner& runner,
                                         int64_t capacity);

// Tokens that end an assistant turn for this model: config eos ids + the chat format's stops.
std::vector<int32_t> stop_token_ids(const Model& model);

}  // namespace kvo::cli
