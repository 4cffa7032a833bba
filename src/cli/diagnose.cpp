// `kvoffload diagnose --model PATH --kv METHOD [knobs] --prompt-file F [--steps N] [--chat]
// [--json]`: why a sparse KV method loses accuracy. Runs the prompt (exact prefill), then N
// greedy decode steps with the policy; at the last step, per layer and KV head, it reports the
// share of the exact attention mass that falls on the tokens the policy attended
// (sinks + outliers + local + selected + generated) and the relative error of the attention
// output against exact attention over every token, both with the same queries (each layer's
// error in isolation, kv/kv_policy.h KvHeadDiagnostics). With N > 1 it also counts the prompt
// tokens each step attends that the step before did not: what a device cache of the previous
// step's tokens would still have to fetch.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
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
  int64_t steps = 1;
  bool chat = false, json = false;
};

void run_diagnose(const DiagnoseFlags& f) {
  const KvSpec spec = f.model.kv_spec();  // bad knobs fail before the model loads
  check(spec.sparse(), "diagnose needs a sparse --kv method (shadowkv, yakv or quest), not dense");
  check(f.steps >= 1, "--steps must be at least 1, got {}", f.steps);
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
  check(T + f.steps <= model.config.max_context,
        "the prompt has {} tokens and --steps asks {} more, but the model's context is {} tokens",
        T, f.steps, model.config.max_context);
  auto kv = make_kv_policy(*runner.backend, model.config, spec, T + f.steps);
  auto* diag = dynamic_cast<KvDiagnosable*>(kv.get());
  check(diag != nullptr, "internal: --kv {} has no diagnostics", spec.method);
  diag->enable_diagnostics();
  std::vector<float> logits = runner.transformer->forward(prompt, 0, *kv, 1);
  kv->finish_prefill();
  int32_t next = 0;
  // Per (layer, kv head): the prompt tokens the previous step attended, and the count of those
  // the latest step attended anew; summed over steps 2..N for the means.
  std::vector<std::vector<int64_t>> previous;
  std::vector<int64_t> new_tokens;
  double new_sum = 0, attended_sum = 0, compared = 0;
  for (int64_t step = 0; step < f.steps; ++step) {
    next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const int32_t ids[1] = {next};
    logits = runner.transformer->forward(ids, T + step, *kv, 1);
    const auto& heads = diag->diagnostics();
    std::vector<std::vector<int64_t>> current(heads.size());
    new_tokens.assign(heads.size(), 0);
    for (size_t i = 0; i < heads.size(); ++i) {
      const auto& pos = heads[i].attended_positions;  // ascending
      current[i].assign(pos.begin(), std::lower_bound(pos.begin(), pos.end(), T));
      if (step == 0) continue;
      std::vector<int64_t> fresh;
      std::set_difference(current[i].begin(), current[i].end(), previous[i].begin(),
                          previous[i].end(), std::back_inserter(fresh));
      new_tokens[i] = int64_t(fresh.size());
      new_sum += double(fresh.size());
      attended_sum += double(current[i].size());
      compared += 1;
    }
    previous = std::move(current);
  }
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
    j["steps"] = f.steps;
    if (compared > 0) {
      j["mean_attended_prompt_tokens"] = attended_sum / compared;
      j["mean_new_prompt_tokens"] = new_sum / compared;
    }
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (size_t i = 0; i < heads.size(); ++i) {
      const auto& h = heads[i];
      nlohmann::ordered_json row = {{"layer", h.layer},
                                    {"kv_head", h.kv_head},
                                    {"attended_tokens", h.attended_tokens},
                                    {"mass_covered", h.mass_covered},
                                    {"output_rel_error", h.output_rel_error}};
      if (f.steps > 1) row["new_prompt_tokens"] = new_tokens[i];
      rows.push_back(row);
    }
    j["heads"] = rows;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("%s\n", diag->layout_summary().c_str());
  std::printf("decode step %lld after %lld prompt tokens (its input token %d)\n",
              (long long)f.steps, (long long)T, next);
  std::printf("%5s %7s %9s %13s %16s%s\n", "layer", "kv_head", "attended", "mass_covered",
              "output_rel_err", f.steps > 1 ? "  new_prompt_tokens" : "");
  for (size_t i = 0; i < heads.size(); ++i) {
    const auto& h = heads[i];
    std::printf("%5d %7d %9lld %13.4f %16.4e", h.layer, h.kv_head, (long long)h.attended_tokens,
                h.mass_covered, h.output_rel_error);
    if (f.steps > 1) std::printf(" %18lld", (long long)new_tokens[i]);
    std::printf("\n");
  }
  std::printf("mean mass covered %.4f (min %.4f), mean output rel. error %.4e (max %.4e)\n",
              mass_sum / n, mass_min, err_sum / n, err_max);
  if (compared > 0)
    std::printf(
        "steps 2-%lld: %.1f prompt tokens attended a step and head, %.1f of them not attended the "
        "step before\n",
        (long long)f.steps, attended_sum / compared, new_sum / compared);
}

std::function<void()> make_diagnose(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "diagnose",
      "Per layer and KV head: attention mass covered by a sparse KV method's selection and its "
      "attention-output error against dense, at a decode step after a prompt");
  auto f = std::make_shared<DiagnoseFlags>();
  f->model.add_to(*sub);
  sub->add_option("--prompt-file,-f", f->prompt_file, "Prompt text file")->required();
  sub->add_option("--steps", f->steps,
                  "Greedy decode steps to run; the report is of the last, and with more than one "
                  "it counts each step's prompt tokens not attended the step before (default 1)");
  sub->add_flag("--chat", f->chat, "Wrap the prompt as one user turn in the model's chat format");
  sub->add_flag("--json", f->json, "Print one JSON object");
  return [f] { run_diagnose(*f); };
}

}  // namespace
KVO_REGISTER_COMMAND("diagnose", make_diagnose);
}  // namespace kvo::cli
