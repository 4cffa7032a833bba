// A loaded model: configuration, host weights, tokenizer and chat format, from an HF
// checkpoint folder or a GGUF file.
#pragma once
#include <string>

#include "model/weights.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace kvo {

struct Model {
  ModelConfig config;
  Weights weights;
  Tokenizer tokenizer;
  ChatFormat chat_format;
  std::string path;
  std::string source_format;  // "safetensors" or "gguf"
};

// `path`: a .gguf file, or a folder with config.json + safetensors + tokenizer.json.
Model load_model(const std::string& path);

}  // namespace kvo
