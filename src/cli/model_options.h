// Flags shared by every subcommand that runs a model: --model, --device, --threads, --kv.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "kv/kv_policy.h"
#include "model/model.h"
#include "model/transformer.h"

namespace kvo::cli {

struct ModelOptions {
  std::string model_path;
  std::string device = "auto";
  int threads = 0;
  std::string kv_method = "dense";

  void add_to(CLI::App& cmd);
};

// Everything needed to run a model, loaded in dependency order.
struct LoadedRunner {
  Model model;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Transformer> transformer;
};
LoadedRunner load_runner(const ModelOptions& options);

// A KV policy for one sequence of at most `capacity` tokens.
std::unique_ptr<KvPolicy> make_kv_policy(const ModelOptions& options, LoadedRunner& runner,
                                         int64_t capacity);

// Tokens that end an assistant turn for this model: config eos ids + the chat format's stops.
std::vector<int32_t> stop_token_ids(const Model& model);

}  // namespace kvo::cli
