// Byte-level BPE tokenizer (GPT-2 byte mapping) loaded from an HF tokenizer.json or from GGUF
// metadata (tokenizer.ggml.*). Special/added tokens are matched before pre-tokenization.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvo {

class GgufFile;

class Tokenizer {
 public:
  // tokenizer.json from an HF folder; tokenizer_config.json beside it (if present) supplies
  // the chat template text and the bos/eos token names.
  static Tokenizer from_json_file(const std::string& path);
  static Tokenizer from_json(const std::string& json_text, const std::string& where);
  static Tokenizer from_gguf(const GgufFile& gguf);
  // A .gguf file, an HF folder (its tokenizer.json) or a tokenizer.json file.
  static Tokenizer from_path(const std::string& path);

  // Encodes text; special tokens written in the text (e.g. "<|im_start|>") become their ids.
  // No BOS is added: chat templates write it themselves, as HF's add_special_tokens=False.
  std::vector<int32_t> encode(std::string_view text) const;
  // Decodes ids to UTF-8 text (special tokens included as their text).
  std::string decode(const std::vector<int32_t>& ids) const;
  // Raw bytes of one token (special tokens as their text).
  std::string token_bytes(int32_t id) const;
  // The vocabulary spelling of one token (byte-level text such as "Ġthe", or the added text).
  std::string token_piece(int32_t id) const;

  int32_t vocab_size() const;
  std::optional<int32_t> token_id(std::string_view token_text) const;  // exact vocab lookup
  bool is_special(int32_t id) const;
  int32_t bos_id() const;  // -1 when none
  int32_t eos_id() const;  // -1 when none
  // Chat template source text when the tokenizer's config carries one (jinja), else "".
  const std::string& chat_template_source() const;

  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of token ids into text pieces that are always complete UTF-8: bytes of a
// character split across tokens are held back until the character is complete.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::string push(int32_t id);  // the new complete text, possibly empty
  std::string flush();           // whatever is held back (invalid bytes become U+FFFD)

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
};

}  // namespace kvo
