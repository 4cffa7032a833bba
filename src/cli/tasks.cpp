// `kvoffload tasks list|generate|score`: the low-context-intensity contrast tasks
// (RULER/HELMET-style) that show where KV-offloading methods look lossless.
#include "eval/tasks.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "eval/haystack.h"
#include "eval/jsonl.h"
#include "eval/score.h"
#include "eval/token_counter.h"
#include "util/error.h"

namespace kvo::cli {
namespace {

struct GenerateFlags {
  std::string task, tokens = "4K", tokenizer, out, haystack;
  uint64_t seed = 0;
  size_t n = 20;
};

struct ScoreFlags {
  std::string data, predictions;
  bool json = false;
};

void run_generate(const GenerateFlags& f) {
  TaskOptions o;
  o.task = f.task;
  o.target_tokens = parse_token_count(f.tokens, "--tokens");
  o.n = f.n;
  o.seed = f.seed;
  const TaskInfo& info = contrast_task(f.task);
  if (info.needs_haystack || !f.haystack.empty()) o.haystack_dir = find_haystack_dir(f.haystack);
  const TokenCounter count = load_token_counter(f.tokenizer);
  std::vector<nlohmann::ordered_json> rows;
  for (size_t i = 0; i < o.n; ++i) {
    rows.push_back(info.generate(o, i, count));
    std::fprintf(stderr, "\r%s: %zu/%zu samples", o.task.c_str(), i + 1, o.n);
  }
  std::fprintf(stderr, "\n");
  write_jsonl(f.out, rows);
}

void run_score(const ScoreFlags& f) {
  const std::vector<JsonlRow> data = read_jsonl(f.data);
  const std::vector<JsonlRow> pred = read_jsonl(f.predictions);
  check(data.size() == pred.size(),
        "{} has {} samples but {} has {} predictions (one per line, "
        "in the same order)",
        f.data, data.size(), f.predictions, pred.size());
  double sum = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    sum += score_sample(sample_task(data[i].value), data[i].value,
                        jsonl_string(pred[i], "prediction"), data[i].where())
               .score;
  }
  const double score = data.empty() ? 0.0 : 100.0 * sum / double(data.size());
  if (f.json) {
    std::printf(
        "%s\n",
        nlohmann::ordered_json({{"score", score}, {"samples", data.size()}}).dump().c_str());
  } else {
    std::printf("score: %.2f (%zu samples)\n", score, data.size());
  }
}

std::function<void()> add_tasks(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("tasks", "Contrast tasks: RULER-style needles, JSON-KV");
  cmd->require_subcommand(1);
  CLI::App* l = cmd->add_subcommand("list", "List the contrast tasks");

  auto gen = std::make_shared<GenerateFlags>();
  CLI::App* g = cmd->add_subcommand("generate", "Generate a contrast-task set");
  g->add_option("--task", gen->task,
                "niah_multikey|niah_multivalue|variable_tracking|frequent_words|json_kv")
      ->required();
  g->add_option("--tokens", gen->tokens, "Prompt length in tokens, e.g. 4096 or 4K");
  g->add_option("--n", gen->n, "Number of samples");
  g->add_option("--seed", gen->seed, "Seed; the same seed gives the same file");
  g->add_option("--tokenizer", gen->tokenizer, "tokenizer.json, an HF folder, or a .gguf")
      ->required();
  g->add_option("--out", gen->out, "Output JSONL")->required();
  g->add_option("--haystack", gen->haystack, "Folder of .txt filler essays (needle tasks)");

  auto score = std::make_shared<ScoreFlags>();
  CLI::App* s = cmd->add_subcommand("score", "Score predictions (string_match_all, 0..100)");
  s->add_option("--data", score->data, "Task JSONL")->required();
  s->add_option("--predictions", score->predictions,
                "JSONL: {\"prediction\": \"...\"} per line, in the data file's order")
      ->required();
  s->add_flag("--json", score->json, "Print {\"score\", \"samples\"}");

  return [l, g, s, gen, score]() {
    if (l->parsed()) {
      for (const TaskInfo& t : contrast_tasks()) {
        std::printf("%-18s %s\n", t.name.c_str(), t.description.c_str());
      }
    }
    if (g->parsed()) run_generate(*gen);
    if (s->parsed()) run_score(*score);
  };
}

}  // namespace

KVO_REGISTER_COMMAND("tasks", add_tasks);

}  // namespace kvo::cli
