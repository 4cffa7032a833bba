// `kvoffload generate`: one prompt in, text streamed out, then a timing line.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "engine/generator.h"
#include "util/error.h"
#include "util/text.h"

namespace kvo::cli {
namespace {

struct GenerateFlags {
  ModelOptions model;
  std::string prompt, prompt_file, system, chat_template;
  bool chat = false, json = false, ignore_eos = false;
  int max_new_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;
};

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), "cannot read prompt file {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void run_generate(const GenerateFlags& f) {
  validate(f.sampling);  // bad flags fail before the model is loaded
  std::string text = f.prompt_file.empty() ? f.prompt : read_text_file(f.prompt_file);
  LoadedRunner runner = load_runner(f.model);
  Model& model = runner.model;
  if (!f.chat_template.empty()) model.chat_format = parse_chat_format(f.chat_template);
  if (f.chat) {
    std::vector<ChatMessage> messages;
    if (!f.system.empty()) messages.push_back({"system", f.system});
    messages.push_back({"user", text});
    text = render_chat(model.chat_format, messages);
  }
  const std::vector<int32_t> prompt = model.tokenizer.encode(text);
  check(!prompt.empty(), "the prompt is empty");
  check(int64_t(prompt.size()) < model.config.max_context,
        "the prompt has {} tokens but the model's context is {} tokens", prompt.size(),
        model.config.max_context);

  GenerationOptions options;
  options.max_new_tokens = f.max_new_tokens;
  options.sampling = f.sampling;
  options.stop_strings = f.stop;
  options.stop_ids = stop_token_ids(model);
  options.ignore_eos = f.ignore_eos;
  const int64_t capacity =
      std::min<int64_t>(model.config.max_context, int64_t(prompt.size()) + f.max_new_tokens);
  auto kv = make_kv_policy(f.model, runner, capacity);

  auto print = [&](std::string_view piece) {
    if (f.json) return;
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  };
  GenerationResult r = generate(*runner.transformer, model.tokenizer, *kv, prompt, options, print);
  // The KV cache against a dense one of the same capacity at the backend's bytes per value.
  const double dense_bytes =
      double(model.config.kv_bytes_per_token(runner.transformer->value_bytes()) * capacity);
  const double of_dense = dense_bytes > 0 ? double(r.kv.gpu_bytes) / dense_bytes : 0.0;
  if (f.json) {
    nlohmann::json j = {{"text", r.text},
                        {"tokens", r.tokens},
                        {"stop_reason", r.stop_reason},
                        {"prompt_tokens", r.prompt_tokens},
                        {"generated_tokens", r.tokens.size()},
                        {"prefill_seconds", r.prefill_seconds},
                        {"prefill_tokens_per_second", r.prefill_tokens_per_second()},
                        {"decode_tokens_per_second", r.decode_tokens_per_second()},
                        {"device", runner.backend->name()},
                        {"kv", kv->name()},
                        {"kv_gpu_bytes", r.kv.gpu_bytes},
                        {"kv_cpu_bytes", r.kv.cpu_bytes},
                        {"kv_pcie_bytes_per_step", r.kv.pcie_bytes_per_step},
                        {"kv_gpu_fraction_of_dense", of_dense}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf(
      "\n\n[prompt tokens: %lld | generated: %zu (%s) | prefill: %.1f tok/s | decode: %.1f tok/s | "
      "%s, kv %s]\n",
      static_cast<long long>(r.prompt_tokens), r.tokens.size(), r.stop_reason.c_str(),
      r.prefill_tokens_per_second(), r.decode_tokens_per_second(), runner.backend->name().c_str(),
      kv->name().c_str());
  std::printf(
      "[KV: GPU %s (%s a prompt token, %.3f of dense) | CPU %s | PCIe %s a decode step]\n",
      human_bytes(double(r.kv.gpu_bytes)).c_str(),
      human_bytes(double(r.kv.gpu_bytes) / double(std::max<int64_t>(r.prompt_tokens, 1))).c_str(),
      of_dense, human_bytes(double(r.kv.cpu_bytes)).c_str(),
      human_bytes(double(r.kv.pcie_bytes_per_step)).c_str());
}

std::function<void()> make_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd =
      app.add_subcommand("generate", "Generate text for one prompt, streamed as it comes");
  f->model.add_to(*cmd);
  auto* prompt = cmd->add_option("--prompt,-p", f->prompt, "Prompt text");
  auto* file = cmd->add_option("--prompt-file,-f", f->prompt_file, "Read the prompt from a file");
  prompt->excludes(file);
  cmd->add_flag("--chat", f->chat, "Wrap the prompt as one user turn in the model's chat format");
  cmd->add_option("--system", f->system, "System message (with --chat)");
  cmd->add_option("--chat-template", f->chat_template,
                  "Override the chat format: llama3, qwen3 or chatml");
  cmd->add_option("--max-new-tokens,-n", f->max_new_tokens, "Most tokens to generate")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", f->sampling.temperature, "Sampling temperature; 0 = greedy")
      ->capture_default_str();
  cmd->add_option("--top-k", f->sampling.top_k, "Sample from the k most likely tokens; 0 = all")
      ->capture_default_str();
  cmd->add_option("--top-p", f->sampling.top_p, "Nucleus sampling mass in (0, 1]")
      ->capture_default_str();
  cmd->add_option("--seed", f->sampling.seed, "Random seed for sampling")->capture_default_str();
  cmd->add_option("--stop", f->stop, "Stop before this string (repeatable)");
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Keep generating past end-of-turn tokens");
  cmd->add_flag("--json", f->json, "Print one JSON object with the text and timings instead");
  cmd->callback([cmd, f] {
    if (cmd->count("--prompt") + cmd->count("--prompt-file") == 0)
      throw CLI::RequiredError("--prompt or --prompt-file");
  });
  return [f] { run_generate(*f); };
}

}  // namespace
KVO_REGISTER_COMMAND("generate", make_generate);
}  // namespace kvo::cli
