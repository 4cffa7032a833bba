// Pre-tokenization: cuts text (between added tokens, after normalization) into the words that
// BPE merges within. Built from a tokenizer.json "pre_tokenizer" or a GGUF tokenizer.ggml.pre.
#pragma once
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace kvo {

// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available), written in the
// syntax HF tokenizers uses; \s is taken to mean Unicode White_Space as there. Thread-safe.
class Regex {
 public:
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Start and end byte offsets of every non-overlapping match, left to right.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*; void keeps pcre2.h out of this header
  bool jit_ = false;
};

// The pre-tokenizer regexes of the models we support (HF tokenizer.json spellings).
namespace pre_patterns {
extern const char* const kGpt2;    // GPT-2 / ByteLevel(use_regex=true)
extern const char* const kLlama3;  // digits in runs of up to 3
extern const char* const kQwen2;   // single digits
}  // namespace pre_patterns

class PreTokenizer {
 public:
  enum class Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext };

  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // `spec` is tokenizer.json's "pre_tokenizer" (may be null); `where` names the file in errors.
  static PreTokenizer from_json(const nlohmann::json& spec, const std::string& where);
  // llama.cpp's tokenizer.ggml.pre names ("llama-bpe", "qwen2", "smollm", "gpt2", ...).
  static PreTokenizer from_gguf_pre(const std::string& pre, const std::string& where);

  void add_split(const std::string& pattern, Behavior behavior);
  void set_add_prefix_space(bool on) { add_prefix_space_ = on; }
  bool add_prefix_space() const { return add_prefix_space_; }

  // Appends the words of `text` as views into it (the prefix space, when configured, must
  // already be part of `text`).
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  struct Step {
    std::unique_ptr<Regex> regex;
    Behavior behavior;
  };
  std::vector<Step> steps_;
  bool add_prefix_space_ = false;
};

}  // namespace kvo
