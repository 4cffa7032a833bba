#include "cli/model_options.h"

#include <algorithm>

#include "util/error.h"

namespace kvo::cli {

void ModelOptions::add_to(CLI::App& cmd) {
  cmd.add_option("--model,-m", model_path,
                 "Model: a .gguf file or an HF folder (config.json, *.safetensors, tokenizer.json)")
      ->required();
  cmd.add_option("--device", device, "Where to run: cpu, cuda or auto (cuda when present)")
      ->capture_default_str();
  cmd.add_option("--threads,-t", threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd.add_option("--kv", kv_method, "KV-cache policy: dense (all KV kept, exact attention)")
      ->capture_default_str();
}

LoadedRunner load_runner(const ModelOptions& options) {
  LoadedRunner r{load_model(options.model_path), make_backend(options.device, options.threads),
                 nullptr};
  r.transformer = std::make_unique<Transformer>(*r.backend, r.model.config, r.model.weights);
  return r;
}

std::unique_ptr<KvPolicy> make_kv_policy(const ModelOptions& options, LoadedRunner& runner,
                                         int64_t capacity) {
  if (options.kv_method == "dense")
    return make_dense_policy(*runner.backend, runner.model.config, capacity);
  fail("unknown --kv method '{}' (available: dense)", options.kv_method);
}

std::vector<int32_t> stop_token_ids(const Model& model) {
  std::vector<int32_t> ids(model.config.eos_ids.begin(), model.config.eos_ids.end());
  if (model.tokenizer.eos_id() >= 0) ids.push_back(model.tokenizer.eos_id());
  for (const std::string& text : chat_stop_tokens(model.chat_format)) {
    if (auto id = model.tokenizer.token_id(text)) ids.push_back(*id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace kvo::cli
