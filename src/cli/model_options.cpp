#include "cli/model_options.h"

#include <algorithm>

#include "model/random_weights.h"
#include "util/error.h"

namespace kvo::cli {

void add_kv_options(CLI::App& cmd, std::string& method, std::map<std::string, std::string>& knobs) {
  cmd.add_option("--kv", method,
                 "KV-cache policy: dense (all KV on the device, exact), shadowkv (low-rank keys, "
                 "chunk landmarks, values offloaded), yakv (full-rank keys, quantized per-token "
                 "landmarks, K/V offloaded), quest (page min/max bounds, nothing offloaded)")
      ->capture_default_str();
  struct Knob {
    const char* name;
    const char* help;
  };
  static const Knob kKnobs[] = {
      {"budget",
       "Sparse KV: selected prompt tokens per KV head, a fraction of the prompt if <= 1 "
       "else tokens (shadowkv 0.015625, yakv 0.03125, quest 0.0625)"},
      {"sinks", "Sparse KV: first N prompt tokens kept exact (0)"},
      {"group-agg", "Sparse KV: combine the scores of a GQA group's query heads: max | mean (max)"},
      {"local", "Sparse KV: last prompt tokens kept exact (shadowkv 32, yakv 64, quest 16)"},
      {"chunk", "shadowkv/yakv: tokens per landmark (shadowkv 8, yakv 1)"},
      {"page", "quest: tokens per page (16)"},
      {"outliers", "shadowkv/yakv: exact outlier chunks per KV head (shadowkv 48, yakv 0)"},
      {"rank", "shadowkv: rank of the pre-RoPE key SVD (160)"},
      {"landmarks",
       "yakv: landmark quantizer spec, e.g. higgs:d=4,n=256 (default) or "
       "residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256, bf16, f32"},
      {"kv-store",
       "yakv/shadowkv: offloaded K/V store: bf16 | fp8 | higgs:d=2,n=256 (yakv "
       "default) | f32 (shadowkv default bf16)"},
      {"fetch-cache",
       "yakv/shadowkv: on | off (on): keep the latest step's fetched K/V records on the GPU "
       "and fetch only newly selected ones over PCIe (same outputs, fewer PCIe bytes)"},
  };
  for (const Knob& k : kKnobs) cmd.add_option(std::string("--") + k.name, knobs[k.name], k.help);
}

KvSpec kv_spec_from_flags(const std::string& method,
                          const std::map<std::string, std::string>& knobs) {
  std::vector<std::pair<std::string, std::string>> given;
  for (const auto& [name, value] : knobs)
    if (!value.empty()) given.emplace_back(name, value);
  return KvSpec::from_knobs(method, given).resolved();
}

CLI::Option* add_random_weights_option(CLI::App& cmd, std::string& config_path,
                                       CLI::Option* model) {
  return cmd
      .add_option("--random-weights", config_path,
                  "Instead of a model file: the model of this HF config.json (or a folder holding "
                  "one) with random weights, e.g. bench/configs/llama-3.1-8b.json")
      ->excludes(model);
}

void ModelOptions::add_to(CLI::App& cmd, bool with_random_weights) {
  CLI::Option* model = cmd.add_option(
      "--model,-m", model_path,
      "Model: a .gguf file or an HF folder (config.json, *.safetensors, tokenizer.json)");
  if (with_random_weights)
    add_random_weights_option(cmd, random_weights, model);  // one of the two: load_weights_runner
  else
    model->required();
  cmd.add_option("--device", device, "Where to run: cpu, cuda or auto (cuda when present)")
      ->capture_default_str();
  cmd.add_option("--threads,-t", threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd.add_option("--context", context,
                 "Context length in tokens (default: the model's own). Longer than the model was "
                 "trained for runs RoPE past its training range (a warning says so); quality may "
                 "drop")
      ->check(CLI::NonNegativeNumber);
  add_kv_options(cmd, kv_method, kv_knobs);
}

namespace {

// --context N replaces the trained context length, as llama.cpp's --ctx-size does.
void apply_context(const ModelOptions& options, ModelConfig& config) {
  if (options.context <= 0) return;
  if (options.context > config.max_context)
    fmt::print(stderr,
               "warning: --context {} is longer than the {} tokens the model was trained on; "
               "quality may drop past {}\n",
               options.context, config.max_context, config.max_context);
  config.max_context = options.context;
}

}  // namespace

LoadedRunner load_runner(const ModelOptions& options) {
  LoadedRunner r{load_model(options.model_path), make_backend(options.device, options.threads),
                 nullptr};
  apply_context(options, r.model.config);
  r.transformer = std::make_unique<Transformer>(*r.backend, r.model.config, r.model.weights);
  return r;
}

WeightsRunner load_weights_runner(const ModelOptions& options) {
  check(!options.model_path.empty() || !options.random_weights.empty(),
        "--model or --random-weights is required");
  WeightsRunner r;
  r.backend = make_backend(options.device, options.threads);  // a bad --device fails first
  LoadedModel loaded;
  if (options.random_weights.empty()) {
    Model model = load_model(options.model_path);
    loaded = {std::move(model.config), std::move(model.weights), model.source_format};
    r.source = options.model_path;
  } else {
    loaded = load_random_model(options.random_weights);
    r.source = "random weights from " + options.random_weights;
  }
  apply_context(options, loaded.config);
  r.config = loaded.config;
  r.transformer = std::make_unique<Transformer>(*r.backend, loaded.config, loaded.weights);
  r.backend->synchronize();  // the uploads have read the host weights, which go now
  return r;
}

std::unique_ptr<KvPolicy> make_kv_policy(const ModelOptions& options, LoadedRunner& runner,
                                         int64_t capacity) {
  return make_kv_policy(*runner.backend, runner.model.config, options.kv_spec(), capacity);
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
