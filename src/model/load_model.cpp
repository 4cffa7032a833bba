#include <filesystem>

#include "io/gguf.h"
#include "model/model.h"
#include "util/error.h"

namespace kvo {

Model load_model(const std::string& path) {
  namespace fs = std::filesystem;
  check(fs::exists(path), "model not found: {}", path);
  if (fs::is_directory(path)) {
    const fs::path tokenizer_json = fs::path(path) / "tokenizer.json";
    check(fs::exists(tokenizer_json), "{} has no tokenizer.json", path);
    LoadedModel loaded = load_hf_checkpoint(path);
    Tokenizer tokenizer = Tokenizer::from_json_file(tokenizer_json.string());
    ChatFormat format =
        detect_chat_format(tokenizer.chat_template_source(), loaded.config.arch_name);
    return Model{
        std::move(loaded.config), std::move(loaded.weights), std::move(tokenizer), format, path,
        loaded.source_format};
  }
  LoadedModel loaded = load_gguf_model(path);
  Tokenizer tokenizer = Tokenizer::from_gguf(GgufFile::open(path));
  ChatFormat format = detect_chat_format(tokenizer.chat_template_source(), loaded.config.arch_name);
  return Model{
      std::move(loaded.config), std::move(loaded.weights), std::move(tokenizer), format, path,
      loaded.source_format};
}

}  // namespace kvo
