// Tokenizer internals shared by its loaders (tokenizer.json, GGUF) and the encode/decode code.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace kvo {

struct Tokenizer::Impl {
  std::string where;                // file name for error messages
  std::vector<std::string> pieces;  // id -> vocabulary spelling (byte-level, or added text)
  std::vector<std::string> bytes;   // id -> the bytes it decodes to
  std::vector<uint8_t> special;     // id -> is a special (control) token
  std::unordered_map<std::string, int32_t> piece_to_id;
  std::vector<utf8::Normalization> normalizers;
  PreTokenizer pre;
  AddedTokenMatcher added;
  std::unique_ptr<BpeModel> bpe;
  int32_t bos = -1, eos = -1;
  std::string chat_template;

  // Builds the BPE model and the per-id tables once pieces, merges and added tokens are known.
  void finish(const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges);
  static Tokenizer make(std::unique_ptr<Impl> impl) { return Tokenizer(std::move(impl)); }
};

}  // namespace kvo
