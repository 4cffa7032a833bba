// The tokenizer side of prompt fitting lives apart from the fit itself so that generators and
// their tests can run on any counter.
#include "eval/token_counter.h"

#include <filesystem>
#include <memory>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace kvo {

TokenCounter load_token_counter(const std::string& path) {
  namespace fs = std::filesystem;
  check(fs::exists(path), "--tokenizer {}: no such file or folder", path);
  std::shared_ptr<Tokenizer> tokenizer;
  if (fs::is_directory(path)) {
    const fs::path json = fs::path(path) / "tokenizer.json";
    check(fs::exists(json), "--tokenizer {}: the folder has no tokenizer.json", path);
    tokenizer = std::make_shared<Tokenizer>(Tokenizer::from_json_file(json.string()));
  } else if (fs::path(path).extension() == ".gguf") {
    GgufFile gguf = GgufFile::open(path);
    tokenizer = std::make_shared<Tokenizer>(Tokenizer::from_gguf(gguf));
  } else {
    tokenizer = std::make_shared<Tokenizer>(Tokenizer::from_json_file(path));
  }
  return [tokenizer](std::string_view text) { return int64_t(tokenizer->encode(text).size()); };
}

}  // namespace kvo
