#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pre_tokenizer.h"

#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace kvo {

namespace pre_patterns {
const char* const kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}  // namespace pre_patterns

namespace {
pcre2_code* as_code(void* p) {
  return static_cast<pcre2_code*>(p);
}

// Unicode White_Space, which is what \s means in the regex engines HF tokenizers uses. PCRE2's
// \s also takes U+180E (via \h), which would split words HF keeps together.
constexpr const char* kWhiteSpace =
    R"(\x{09}-\x{0D}\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F})"
    R"(\x{3000})";

// Rewrites \s and \S into explicit White_Space classes, inside and outside brackets.
std::string with_explicit_whitespace(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (e == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        check(e != 'S', "pre-tokenizer regex: \\S inside a character class is not supported: {}",
              pattern);
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

std::string escape_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}-/#").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}
}  // namespace

Regex::Regex(const std::string& hf_pattern) {
  const std::string pattern = with_explicit_whitespace(hf_pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    fail("pre-tokenizer regex does not compile at offset {}: {} (pattern: {})", offset,
         reinterpret_cast<const char*>(message), pattern);
  }
  code_ = code;
  // JIT is an optimisation only: the interpreter gives the same matches.
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
  pcre2_code_free(as_code(code_));
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  // Match data per call keeps concurrent encodes independent.
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(as_code(code_), nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  // The text was validated once by the caller; re-checking at every match would be quadratic.
  uint32_t options = PCRE2_NO_UTF_CHECK;
  while (start <= text.size()) {
    int rc = pcre2_match(as_code(code_), subject, text.size(), start, options, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(as_code(code_), subject, text.size(), start, options | PCRE2_NO_JIT, md,
                       nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      fail("pre-tokenizer regex failed: {}", reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      start = e;
    } else {
      // Empty match: step over one whole character.
      start = e + 1;
      while (start < text.size() && (uint8_t(text[start]) & 0xC0) == 0x80) ++start;
    }
  }
  pcre2_match_data_free(md);
}

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::add_split(const std::string& pattern, Behavior behavior) {
  steps_.push_back({std::make_unique<Regex>(pattern), behavior});
}

namespace {

PreTokenizer::Behavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Isolated") return PreTokenizer::Behavior::Isolated;
  if (name == "Removed") return PreTokenizer::Behavior::Removed;
  if (name == "MergedWithPrevious") return PreTokenizer::Behavior::MergedWithPrevious;
  if (name == "MergedWithNext") return PreTokenizer::Behavior::MergedWithNext;
  fail("{}: Split behavior '{}' is not supported", where, name);
}

void add_from_json(PreTokenizer& pre, const nlohmann::json& spec, bool first,
                   const std::string& where) {
  if (spec.is_null()) return;
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    bool at_start = first;
    for (const auto& step : spec.at("pretokenizers")) {
      add_from_json(pre, step, at_start, where);
      at_start = false;
    }
  } else if (type == "Split") {
    check(!spec.value("invert", false), "{}: Split with invert=true is not supported", where);
    const auto& pattern = spec.at("pattern");
    std::string regex;
    if (pattern.contains("Regex")) {
      regex = pattern.at("Regex").get<std::string>();
    } else if (pattern.contains("String")) {
      regex = escape_literal(pattern.at("String").get<std::string>());
    } else {
      fail("{}: Split pattern must be Regex or String", where);
    }
    pre.add_split(regex, parse_behavior(spec.value("behavior", "Isolated"), where));
  } else if (type == "ByteLevel") {
    if (spec.value("add_prefix_space", false)) {
      // HF prefixes every piece it is given; that equals prefixing the text only when
      // ByteLevel runs first, which is how byte-level tokenizers use it.
      check(first, "{}: ByteLevel add_prefix_space after another pre-tokenizer is not supported",
            where);
      pre.set_add_prefix_space(true);
    }
    if (spec.value("use_regex", true)) {
      pre.add_split(pre_patterns::kGpt2, PreTokenizer::Behavior::Isolated);
    }
  } else if (type == "Digits") {
    // Rust's char::is_numeric is the general category N, as \p{N}.
    pre.add_split(spec.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)",
                  PreTokenizer::Behavior::Isolated);
  } else {
    fail(
        "{}: pre-tokenizer '{}' is not supported (byte-level BPE tokenizers use Split, "
        "ByteLevel, Digits)",
        where, type);
  }
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& spec, const std::string& where) {
  PreTokenizer pre;
  add_from_json(pre, spec, true, where);
  return pre;
}

PreTokenizer PreTokenizer::from_gguf_pre(const std::string& name, const std::string& where) {
  PreTokenizer pre;
  if (name == "llama-bpe" || name == "llama3") {
    pre.add_split(pre_patterns::kLlama3, Behavior::Isolated);
  } else if (name == "qwen2") {
    pre.add_split(pre_patterns::kQwen2, Behavior::Isolated);
  } else if (name == "smollm" || name == "starcoder" || name == "refact") {
    // SmolLM2's tokenizer.json: Digits(individual_digits) then ByteLevel(use_regex).
    pre.add_split(R"(\p{N})", Behavior::Isolated);
    pre.add_split(pre_patterns::kGpt2, Behavior::Isolated);
  } else if (name == "default" || name == "gpt2" || name.empty()) {
    pre.add_split(pre_patterns::kGpt2, Behavior::Isolated);
  } else {
    fail(
        "{}: tokenizer.ggml.pre '{}' is not supported (supported: llama-bpe, llama3, qwen2, "
        "smollm, starcoder, refact, gpt2, default)",
        where, name);
  }
  return pre;
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  std::vector<std::string_view> pieces{text}, next;
  std::vector<std::pair<size_t, size_t>> matches;
  for (const Step& step : steps_) {
    next.clear();
    for (std::string_view piece : pieces) {
      matches.clear();
      step.regex->find_all(piece, matches);
      auto emit = [&](size_t b, size_t e) {
        if (e > b) next.push_back(piece.substr(b, e - b));
      };
      size_t prev = 0;  // end of the last emitted region
      for (size_t m = 0; m < matches.size(); ++m) {
        const auto [b, e] = matches[m];
        switch (step.behavior) {
          case Behavior::Isolated:
            emit(prev, b);
            emit(b, e);
            prev = e;
            break;
          case Behavior::Removed:
            emit(prev, b);
            prev = e;
            break;
          case Behavior::MergedWithPrevious:
            emit(prev, e);
            prev = e;
            break;
          case Behavior::MergedWithNext:
            emit(prev, b);
            prev = b;
            break;
        }
      }
      emit(prev, piece.size());
    }
    pieces.swap(next);
  }
  for (std::string_view p : pieces) {
    if (!p.empty()) out.push_back(p);
  }
}

}  // namespace kvo
