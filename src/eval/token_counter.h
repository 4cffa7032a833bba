// Token counting with a real tokenizer, for fitting generated prompts to a length.
#pragma once
#include <string>

#include "eval/prompt_fit.h"

namespace kvo {

// Loads a tokenizer from a tokenizer.json, an HF folder holding one, or a .gguf file, and
// returns a counter over it (encode(text).size()). Errors name the path.
TokenCounter load_token_counter(const std::string& path);

}  // namespace kvo
