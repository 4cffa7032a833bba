// `kvoffload diagnose --model PATH --kv METHOD [knobs] --prompt-file F [--chat] [--json]`:
// why a sparse KV method loses accuracy. Runs the prompt (exact prefill), then one decode step
// (the greedy next token) with the policy; at that step, per layer and KV head, it reports the
// share of the exact attention mass that falls on the tokens the policy attended
// (sinks + outliers + local + selected + generated) and the relative error of the attention
// output against exact attention over every token, both with the same queries (each layer's
// error in isolation, kv/kv_policy.h KvHeadDiagnostics).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "util/error.h"

namespace kvo::cli {
namespace {

struct DiagnoseFlags {
  ModelOptions model;
  std::string prompt_file;
  bool chat = false, json = false;
};

void run_diagnose(const DiagnoseFlags& f) {
  const KvSpec spec = f.model.kv_spec();  // bad knobs fail before the model loads
  check(spec.sparse(), "diagnose needs a sparse --kv method (shadowkv, yakv or quest), not dense");
  std::ifstream in(f.prompt_file, std::ios::binary);
  check(bool(in), "cannot read prompt file {}", f.prompt_file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  LoadedRunner runner = load_runner(f.model);
  Model& model = runner.model;
  if (f.chat) text = render_chat(model.chat_format, {{"user", text}});
  const std::vector<int32_t> prompt = model.tokenizer.encode(text);
  check(!prompt.empty(), "the prompt is empty");
  const int64_t T = int64_t(prompt.size());
  check(T + 1 <= model.config.max_context,
        "the prompt has {} tokens but the model's context is {} tokens", T,
        model.config.max_context);
  auto kv = make_kv_policy(*runner.backend, model.config, spec, T + 1);
  auto* diag = dynamic_cast<KvDiagnosable*>(kv.get());
  check(diag != nullptr, "internal: --kv {} has no diagnostics", spec.method);
  diag->enable_diagnostics();
  std::vector<float> logits = runner.transformer->forward(prompt, 0, *kv, 1);
  kv->finish_prefill();
  const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const int32_t ids[1] = {next};
  runner.transformer->forward(ids, T, *kv, 1);
  const auto& heads = diag->diagnostics();
  const KvMemoryReport mem = kv->memory();

  double mass_sum = 0, err_sum = 0, mass_min = 1, err_max = 0;
  for (const auto& h : heads) {
    mass_sum += h.mass_covered;
    err_sum += h.output_rel_error;
    mass_min = std::min(mass_min, h.mass_covered);
    err_max = std::max(err_max, h.output_rel_error);
  }
  const double n = std::max<double>(1, double(heads.size()));
  if (f.json) {
    nlohmann::ordered_json j;
    j["kv"] = spec.to_string();
    j["layout"] = diag->layout_summary();
    j["prompt_tokens"] = T;
    j["next_token"] = next;
    j["gpu_bytes"] = mem.gpu_bytes;
    j["cpu_bytes"] = mem.cpu_bytes;
    j["pcie_bytes_per_step"] = mem.pcie_bytes_per_step;
    j["mean_mass_covered"] = mass_sum / n;
    j["min_mass_covered"] = mass_min;
    j["mean_output_rel_error"] = err_sum / n;
    j["max_output_rel_error"] = err_max;
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const auto& h : heads)
      rows.push_back({{"layer", h.layer},
                      {"kv_head", h.kv_head},
                      {"attended_tokens", h.attended_tokens},
                      {"mass_covered", h.mass_covered},
                      {"output_rel_error", h.output_rel_error}});
    j["heads"] = rows;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("%s\n", diag->layout_summary().c_str());
  std::printf("decode step after %lld prompt tokens (next token %d)\n", (long long)T, next);
  std::printf("%5s %7s %9s %13s %16s\n", "layer", "kv_head", "attended", "mass_covered",
              "output_rel_err");
  for (const auto& h : heads)
    std::printf("%5d %7d %9lld %13.4f %16.4e\n", h.layer, h.kv_head, (long long)h.attended_tokens,
                h.mass_covered, h.output_rel_error);
  std::printf("mean mass covered %.4f (min %.4f), mean output rel. error %.4e (max %.4e)\n",
              mass_sum / n, mass_min, err_sum / n, err_max);
}

std::function<void()> make_diagnose(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "diagnose",
      "Per layer and KV head: attention mass covered by a sparse KV method's selection and its "
      "attention-output error against dense, at the first decode step after a prompt");
  auto f = std::make_shared<DiagnoseFlags>();
  f->model.add_to(*sub);
  sub->add_option("--prompt-file,-f", f->prompt_file, "Prompt text file")->required();
  sub->add_flag("--chat", f->chat, "Wrap the prompt as one user turn in the model's chat format");
  sub->add_flag("--json", f->json, "Print one JSON object");
  return [f] { run_diagnose(*f); };
}

}  // namespace
KVO_REGISTER_COMMAND("diagnose", make_diagnose);
}  // namespace kvo::cli
