// `kvoffload eval`: runs tasks x KV methods (x knob sweeps) on one model, one JSONL row per
// sample in OUT/, resumable, then prints the summary table and writes OUT/summary.json.
// The cell loop lives in eval/harness; this file parses flags and builds KV policies.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "eval/harness.h"
#include "eval/prompt_fit.h"
#include "util/error.h"

namespace kvo::cli {
namespace {

struct EvalFlags {
  std::string model, device = "auto", kv = "dense", tasks, data, data_dir, lengths, out;
  int threads = 0;
  int64_t context = 0;
  int max_new_tokens = 0;
  size_t limit = 0;
  bool no_dense = false, quiet = false;
  std::vector<std::string> kv_opts;
  std::vector<std::string> extras;  // method knobs: every flag eval itself does not know
};

// Flags of ModelOptions that are not method knobs.
bool is_base_flag(const std::string& name) {
  return name == "--model" || name == "--device" || name == "--threads" || name == "--context" ||
         name == "--kv" || name == "--help";
}

// The KV flags ModelOptions registers ("--budget" -> description), for help and errors.
std::vector<std::pair<std::string, std::string>> kv_knob_flags() {
  CLI::App app;
  ModelOptions o;
  o.add_to(app);
  std::vector<std::pair<std::string, std::string>> out;
  for (const CLI::Option* opt : app.get_options()) {
    const std::string name = opt->get_name(false, false);
    if (name.rfind("--", 0) != 0 || is_base_flag(name)) continue;
    out.emplace_back(name, opt->get_description());
  }
  return out;
}

// ModelOptions' own description of --kv (the methods it builds).
std::string kv_method_help() {
  CLI::App app;
  ModelOptions o;
  o.add_to(app);
  const CLI::Option* kv = app.get_option_no_throw("--kv");
  return kv ? kv->get_description() : std::string();
}

std::string knob_names() {
  std::string names;
  for (const auto& [name, _] : kv_knob_flags()) names += (names.empty() ? "" : ", ") + name;
  return names.empty() ? "none yet" : names;
}

// A ModelOptions for one cell, parsed by ModelOptions' own flags so its checks and defaults
// apply to the knob strings exactly as in `kvoffload generate`.
ModelOptions options_for(const EvalFlags& f, const KvMethodSpec& spec) {
  CLI::App app{"kv options"};
  ModelOptions o;
  o.add_to(app);
  std::vector<std::string> args = {"--model",   f.model,
                                   "--device",  f.device,
                                   "--threads", std::to_string(f.threads),
                                   "--context", std::to_string(f.context),
                                   "--kv",      spec.method};
  for (const auto& [name, value] : spec.knobs) {
    args.push_back("--" + name);
    if (!value.empty()) args.push_back(value);
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes a vector last-first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    fail("--kv {}: {} (method knobs: {})", spec.label(), e.what(), knob_names());
  }
  return o;
}

std::vector<int64_t> parse_lengths(const std::string& text) {
  std::vector<int64_t> out;
  if (text.empty()) return out;
  for (const std::string& p : split_value_list(text))
    out.push_back(parse_token_count(p, "--lengths"));
  return out;
}

void run_eval_command(const EvalFlags& f) {
  // Everything that can be checked without the model fails first: knob syntax and names, the
  // method list, the data sets.
  std::vector<KnobSweep> knobs = parse_knob_args(f.extras);
  for (const std::string& o : f.kv_opts) knobs.push_back(parse_kv_opt(o));
  const std::vector<std::string> methods = split_value_list(f.kv);
  {
    const auto known = kv_knob_flags();
    for (const KnobSweep& k : knobs) {
      const bool found = std::any_of(known.begin(), known.end(),
                                     [&](const auto& flag) { return flag.first == "--" + k.name; });
      check(found, "unknown method knob --{} (method knobs: {})", k.name, knob_names());
    }
    expand_methods(methods, knobs, !f.no_dense);
  }
  check(!f.tasks.empty() || !f.data.empty(), "give --task TASK[,TASK] and/or --data FILE");
  std::vector<EvalDataset> datasets;
  if (!f.tasks.empty()) {
    const std::string dir = f.data_dir.empty() ? default_data_dir() : f.data_dir;
    datasets = resolve_datasets(split_value_list(f.tasks), parse_lengths(f.lengths), dir);
  } else {
    check(f.lengths.empty(), "--lengths picks shipped sets (--task); --data FILE runs as is");
  }
  if (!f.data.empty()) datasets.push_back(user_dataset(f.data));

  LoadedRunner runner = load_runner(options_for(f, {"dense", {}}));
  // Each policy is built once, small, so an unknown method or a bad knob value fails now and
  // not after an hour of dense runs.
  const int64_t probe_capacity = std::min(1024, runner.model.config.max_context);
  auto probe = [&](const KvMethodSpec& spec) -> std::string {
    try {
      make_kv_policy(options_for(f, spec), runner, probe_capacity);
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  };
  // An unrestricted knob is used by the methods that take it (e.g. --rank by shadowkv only).
  std::vector<std::string> not_taken;
  std::map<std::pair<std::string, std::string>, bool> taken;  // (method, knob) -> applies
  auto applies = [&](const std::string& method, const KnobSweep& k) {
    const auto key = std::make_pair(method, k.name);
    if (auto it = taken.find(key); it != taken.end()) return it->second;
    const std::string err = probe({method, {{k.name, k.values.front()}}});
    if (!err.empty())
      not_taken.push_back(fmt::format("--{} is not used for {}: {}", k.name, method, err));
    return taken[key] = err.empty();
  };
  std::vector<KvMethodSpec> specs;
  try {
    specs = expand_methods(methods, knobs, !f.no_dense, applies);
  } catch (const Error& e) {
    std::string why;
    for (const std::string& n : not_taken) why += "; " + n;
    fail("{}{}", e.what(), why);
  }
  for (const std::string& note : not_taken) std::fprintf(stderr, "note: %s\n", note.c_str());
  std::vector<ModelOptions> cell_options;
  for (const KvMethodSpec& spec : specs) {
    const std::string err = probe(spec);
    check(err.empty(), "--kv {}: {}", spec.label(), err);
    cell_options.push_back(options_for(f, spec));
  }

  EvalEngine engine;
  engine.model = &runner.model;
  engine.transformer = runner.transformer.get();
  engine.device = runner.backend->name();
  engine.stop_ids = stop_token_ids(runner.model);
  engine.make_policy = [&](const KvMethodSpec& spec, int64_t capacity) {
    const size_t i = size_t(std::find(specs.begin(), specs.end(), spec) - specs.begin());
    check(i < specs.size(), "internal: unknown KV spec {}", spec.label());
    return make_kv_policy(cell_options[i], runner, capacity);
  };
  EvalOptions options;
  options.out_dir = f.out;
  options.limit = f.limit;
  options.max_new_tokens = f.max_new_tokens;
  options.reference_dense = !f.no_dense;
  options.quiet = f.quiet;
  const EvalSummary summary = run_eval(datasets, specs, options, engine);
  std::printf("%s", format_summary_table(summary).c_str());
  std::printf("rows and summary.json in %s; HTML report: kvoffload report %s\n", f.out.c_str(),
              f.out.c_str());
}

std::function<void()> make_eval(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Score KV methods on tasks: per-sample rows, summary table, resumable");
  // A later flag overrides an earlier one, so scripts can pass defaults and users extras.
  cmd->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--model,-m", f->model, "Model: a .gguf file or an HF folder")->required();
  cmd->add_option("--device", f->device, "cpu, cuda or auto")->capture_default_str();
  cmd->add_option("--threads,-t", f->threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--context", f->context,
                  "Context length in tokens (default: the model's own; longer than trained prints "
                  "a warning). Samples whose prompt + answer do not fit are skipped")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--task", f->tasks,
                  "Shipped tasks, comma list: text2json, niah_multikey, niah_multivalue, "
                  "variable_tracking, frequent_words, json_kv");
  cmd->add_option("--data", f->data,
                  "Also run your own JSONL ({\"problem\",\"answer\"} Text2JSON rows or contrast "
                  "rows) as one task named after the file");
  cmd->add_option(
         "--kv", f->kv,
         "KV methods, comma list (dense is added, first, as the reference). " + kv_method_help())
      ->capture_default_str();
  cmd->add_option("--kv-opt", f->kv_opts,
                  "A method knob [METHOD:]NAME=V1,V2 (repeatable; lists sweep); same as --NAME "
                  "V1,V2")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--lengths", f->lengths,
                  "Prompt lengths of the shipped sets, e.g. 2K,4K (default: every shipped one)");
  cmd->add_option("--limit", f->limit, "First N samples of each set (0 = all)")
      ->capture_default_str();
  cmd->add_option("--max-new-tokens,-n", f->max_new_tokens,
                  "Cap on the task's generation limit (text2json 1024); 0 = the task's")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--out,-o", f->out, "Results folder (rows resume from what it holds)")
      ->required();
  cmd->add_option("--data-dir", f->data_dir, "Folder of the shipped sets (default: data/)");
  cmd->add_flag("--no-dense", f->no_dense,
                "Do not add dense when it is not in --kv (no fidelity then)");
  cmd->add_flag("--quiet,-q", f->quiet, "No per-cell lines on stderr");
  cmd->allow_extras();
  cmd->footer(
      "Method knobs: any KV flag of ModelOptions, as --NAME V or --NAME V1,V2 (a sweep: one cell "
      "per value; lists of several knobs multiply). Use ';' between values that hold commas, "
      "--METHOD:NAME to restrict a knob to one method. Knobs never apply to dense.\n"
      "Known knobs now: " +
      knob_names());
  cmd->callback([cmd, f] { f->extras = cmd->remaining(); });
  return [f] { run_eval_command(*f); };
}

}  // namespace
KVO_REGISTER_COMMAND("eval", make_eval);
}  // namespace kvo::cli
