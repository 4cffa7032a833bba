// `kvoffload tokenize`: token ids of a text under a model's tokenizer (GGUF metadata or
// tokenizer.json), for checking prompts and comparing with other implementations.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace kvo::cli {
namespace {

struct TokenizeFlags {
  std::string model, text, file;
  bool json = false;
};

void run_tokenize(const TokenizeFlags& f) {
  std::string text = f.text;
  if (!f.file.empty()) {
    std::ifstream in(f.file, std::ios::binary);
    check(bool(in), "cannot read text file {}", f.file);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  const Tokenizer tokenizer = Tokenizer::from_path(f.model);
  const std::vector<int32_t> ids = tokenizer.encode(text);
  if (f.json) {
    nlohmann::json pieces = nlohmann::json::array();
    // Pieces are byte-level spellings or added-token text, so always valid UTF-8 for dump().
    for (int32_t id : ids) pieces.push_back(tokenizer.token_piece(id));
    nlohmann::json out = {{"ids", ids}, {"count", ids.size()}, {"tokens", pieces}};
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  std::printf("%s\n%zu tokens\n", line.c_str(), ids.size());
}

std::function<void()> make_tokenize(CLI::App& app) {
  auto flags = std::make_shared<TokenizeFlags>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  cmd->add_option("--model", flags->model,
                  "A .gguf file (tokenizer from its metadata), an HF folder or a tokenizer.json")
      ->required();
  auto* text = cmd->add_option("--text", flags->text, "Text to tokenize");
  auto* file = cmd->add_option("--file", flags->file, "File whose contents to tokenize");
  text->excludes(file);
  file->excludes(text);
  cmd->add_flag("--json", flags->json, "Print {\"ids\", \"count\", \"tokens\"} as JSON");
  return [flags, text, file] {
    check(text->count() + file->count() == 1, "tokenize needs --text or --file");
    run_tokenize(*flags);
  };
}

}  // namespace
KVO_REGISTER_COMMAND("tokenize", make_tokenize);
}  // namespace kvo::cli
