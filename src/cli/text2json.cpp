// `kvoffload text2json score|generate`: the Text2JSON scorer over JSONL files, and the
// generator of synthetic Text2JSON sets (DESIGN.md §5).
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "eval/haystack.h"
#include "eval/jsonl.h"
#include "eval/text2json_generate.h"
#include "eval/text2json_score.h"
#include "eval/token_counter.h"
#include "util/error.h"
#include "util/text.h"

namespace kvo::cli {
namespace {

struct ScoreFlags {
  std::string data, predictions;
  bool json = false;
};

struct GenerateFlags {
  std::string domains = "products", records = "10", tokens = "8K", tokenizer, out, haystack;
  std::string id_prefix = "t2j";
  uint64_t seed = 0;
  size_t samples = 1;
};

void run_score(const ScoreFlags& f) {
  const std::vector<JsonlRow> gold = read_jsonl(f.data);
  const std::vector<JsonlRow> pred = read_jsonl(f.predictions);
  check(gold.size() == pred.size(),
        "{} has {} samples but {} has {} predictions (one per line, "
        "in the same order)",
        f.data, gold.size(), f.predictions, pred.size());
  std::vector<SampleScore> scores;
  for (size_t i = 0; i < gold.size(); ++i) {
    scores.push_back(score_text2json(jsonl_string(gold[i], "answer"),
                                     jsonl_string(pred[i], "prediction"), gold[i].where()));
  }
  const Text2JsonSummary s = summarize_text2json(scores);
  if (f.json) {
    nlohmann::ordered_json j;
    j["score"] =
        std::isnan(s.score) ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s.score);
    j["samples"] = s.samples;
    j["excluded"] = s.excluded;
    std::printf("%s\n", j.dump().c_str());
  } else if (std::isnan(s.score)) {
    std::printf("text2json score: n/a (all %zu samples excluded)\n", s.samples);
  } else {
    std::printf("text2json score: %.2f (%zu samples, %zu excluded)\n", s.score, s.samples,
                s.excluded);
  }
}

void run_generate(const GenerateFlags& f) {
  Text2JsonOptions o;
  o.domains = split(f.domains, ',');
  const size_t dash = f.records.find('-');
  try {
    o.records_min = std::stoi(f.records.substr(0, dash));
    o.records_max =
        dash == std::string::npos ? o.records_min : std::stoi(f.records.substr(dash + 1));
  } catch (const std::exception&) {
    fail("--records {}: expected N or MIN-MAX", f.records);
  }
  o.target_tokens = parse_token_count(f.tokens, "--tokens");
  check(o.target_tokens >= 2048 && o.target_tokens <= 131072,
        "--tokens {}: Text2JSON prompts are 2K..128K tokens", f.tokens);
  o.seed = f.seed;
  o.samples = f.samples;
  o.id_prefix = f.id_prefix;
  o.haystack_dir = find_haystack_dir(f.haystack);
  const TokenCounter count = load_token_counter(f.tokenizer);
  std::vector<nlohmann::ordered_json> rows;
  for (size_t i = 0; i < o.samples; ++i) {
    rows.push_back(generate_text2json_sample(o, i, count));
    std::fprintf(stderr, "\rtext2json: %zu/%zu samples", i + 1, o.samples);
  }
  std::fprintf(stderr, "\n");
  write_jsonl(f.out, rows);
}

std::function<void()> add_text2json(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("text2json", "Text2JSON: score predictions, generate sets");
  cmd->require_subcommand(1);

  auto score = std::make_shared<ScoreFlags>();
  CLI::App* s = cmd->add_subcommand("score", "Score predictions against a Text2JSON set");
  s->add_option("--data", score->data, "Gold JSONL: {\"problem\", \"answer\"} per line")
      ->required();
  s->add_option("--predictions", score->predictions,
                "JSONL: {\"prediction\": \"...\"} per line, in the gold file's order")
      ->required();
  s->add_flag("--json", score->json, "Print {\"score\", \"samples\", \"excluded\"}");

  auto gen = std::make_shared<GenerateFlags>();
  CLI::App* g = cmd->add_subcommand("generate", "Generate a synthetic Text2JSON set");
  g->add_option("--domain", gen->domains,
                "products|medical|organizations|movies, or a comma list cycled over samples");
  g->add_option("--records", gen->records, "Records per sample: N or MIN-MAX");
  g->add_option("--tokens", gen->tokens, "Prompt length in tokens (2K..128K), e.g. 8192 or 8K");
  g->add_option("--seed", gen->seed, "Seed; the same seed gives the same file");
  g->add_option("--samples", gen->samples, "Number of samples");
  g->add_option("--tokenizer", gen->tokenizer, "tokenizer.json, an HF folder, or a .gguf")
      ->required();
  g->add_option("--out", gen->out, "Output JSONL")->required();
  g->add_option("--haystack", gen->haystack,
                "Folder of .txt filler essays (default: "
                "../shared/data/haystack/paul-graham-essays beside the checkout)");
  g->add_option("--id-prefix", gen->id_prefix, "Prefix of the sample ids");

  return [s, g, score, gen]() {
    if (s->parsed()) run_score(*score);
    if (g->parsed()) run_generate(*gen);
  };
}

}  // namespace

KVO_REGISTER_COMMAND("text2json", add_text2json);

}  // namespace kvo::cli
