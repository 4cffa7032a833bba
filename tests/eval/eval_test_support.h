// Shared by the eval tests: the real llama3.1 tokenizer from ../shared, loaded once.
#pragma once
#include "eval/haystack.h"
#include "eval/token_counter.h"

namespace kvo::testing {

inline const TokenCounter& llama_counter() {
  static const TokenCounter counter =
      load_token_counter(std::string(KVO_SHARED_DIR) + "/data/tokenizers/llama3.1/tokenizer.json");
  return counter;
}

inline std::string test_haystack_dir() {
  return std::string(KVO_SHARED_DIR) + "/data/haystack/paul-graham-essays";
}

}  // namespace kvo::testing
