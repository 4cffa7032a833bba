// The tokenizer's rules on tiny hand-made vocabularies, so they run without any model files:
// merge order, ignore_merges, added tokens, pre-tokenizers, GGUF metadata, streaming, errors.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fuzz.h"
#include "io/gguf.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace kvo {
namespace {

// A byte-level vocabulary: ids 0..255 are the bytes, then `extra` pieces (raw text, spelled
// through the byte map here).
nlohmann::json tiny_tokenizer(const std::vector<std::string>& extra,
                              const std::vector<std::pair<std::string, std::string>>& merges,
                              bool ignore_merges = false,
                              nlohmann::json pre = nlohmann::json::object()) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level::encode(std::string(1, char(b)))] = b;
  for (size_t i = 0; i < extra.size(); ++i) vocab[byte_level::encode(extra[i])] = 256 + i;
  nlohmann::json m = nlohmann::json::array();
  for (const auto& [a, b] : merges)
    m.push_back(byte_level::encode(a) + " " + byte_level::encode(b));
  if (pre.empty()) {
    pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  }
  return {{"model",
           {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}, {"ignore_merges", ignore_merges}}},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre},
          {"decoder", {{"type", "ByteLevel"}}},
          {"added_tokens", nlohmann::json::array()}};
}

Tokenizer load(const nlohmann::json& j) {
  return Tokenizer::from_json(j.dump(), "tiny");
}

TEST(TokenizerBpe, LowestRankMergesFirst) {
  // "b c" outranks "a b", so "abc" ends as a + bc although "ab c" -> "abc" exists.
  auto j = tiny_tokenizer({"ab", "bc", "abc"}, {{"b", "c"}, {"a", "b"}, {"ab", "c"}});
  EXPECT_EQ(load(j).encode("abc"), (std::vector<int32_t>{'a', 257}));
  auto k = tiny_tokenizer({"ab", "bc", "abc"}, {{"a", "b"}, {"b", "c"}, {"ab", "c"}});
  EXPECT_EQ(load(k).encode("abc"), (std::vector<int32_t>{258}));
}

TEST(TokenizerBpe, EqualRanksMergeLeftToRight) {
  auto j = tiny_tokenizer({"aa"}, {{"a", "a"}});
  EXPECT_EQ(load(j).encode("aaa"), (std::vector<int32_t>{256, 'a'}));
  EXPECT_EQ(load(j).encode("aaaa"), (std::vector<int32_t>{256, 256}));
}

TEST(TokenizerBpe, IgnoreMergesTakesWholeWords) {
  // "abc" is in the vocabulary but no merge path reaches it.
  auto with = tiny_tokenizer({"abc"}, {}, true);
  auto without = tiny_tokenizer({"abc"}, {}, false);
  EXPECT_EQ(load(with).encode("abc"), (std::vector<int32_t>{256}));
  EXPECT_EQ(load(without).encode("abc"), (std::vector<int32_t>{'a', 'b', 'c'}));
}

TEST(TokenizerBpe, MergesAsPairsAndCache) {
  auto j = tiny_tokenizer({"ab"}, {});
  j["model"]["merges"] = nlohmann::json::array({nlohmann::json::array({"a", "b"})});
  Tokenizer t = load(j);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.encode("ab ab"), (std::vector<int32_t>{256, ' ', 256}));
}

TEST(TokenizerBpe, ByteLevelPreTokenizerSplitsLikeGpt2) {
  auto j = tiny_tokenizer({" a"}, {{" ", "a"}});
  // " a" merges only inside one word; "a a" is words "a", " a".
  EXPECT_EQ(load(j).encode("a a"), (std::vector<int32_t>{'a', 256}));
  // Digits(individual_digits) before ByteLevel keeps " 1" apart.
  auto d = tiny_tokenizer({" 1"}, {{" ", "1"}}, false,
                          {{"type", "Sequence"},
                           {"pretokenizers",
                            {{{"type", "Digits"}, {"individual_digits", true}},
                             {{"type", "ByteLevel"}, {"add_prefix_space", false}}}}});
  EXPECT_EQ(load(d).encode(" 12"), (std::vector<int32_t>{' ', '1', '2'}));
}

TEST(TokenizerBpe, AddPrefixSpace) {
  auto j = tiny_tokenizer({" a"}, {{" ", "a"}}, false,
                          {{"type", "ByteLevel"}, {"add_prefix_space", true}});
  EXPECT_EQ(load(j).encode("a"), (std::vector<int32_t>{256}));
}

TEST(TokenizerAdded, MatchedBeforeSplittingLongestFirst) {
  auto j = tiny_tokenizer({}, {});
  j["added_tokens"] = {
      {{"id", 300}, {"content", "<s>"}, {"special", true}},
      {{"id", 301}, {"content", "<s>x"}, {"special", false}},
      {{"id", 302}, {"content", "[M]"}, {"special", true}, {"lstrip", true}, {"rstrip", true}},
  };
  Tokenizer t = load(j);
  EXPECT_EQ(t.encode("a<s>b"), (std::vector<int32_t>{'a', 300, 'b'}));
  EXPECT_EQ(t.encode("<s>xy"), (std::vector<int32_t>{301, 'y'}));
  EXPECT_EQ(t.encode("a  [M]  b"), (std::vector<int32_t>{'a', 302, 'b'}));
  EXPECT_EQ(t.encode("<s"), (std::vector<int32_t>{'<', 's'}));
  EXPECT_TRUE(t.is_special(300));
  EXPECT_FALSE(t.is_special(301));
  EXPECT_EQ(t.vocab_size(), 303);
  EXPECT_EQ(t.decode({300, 'a', 302}), "<s>a[M]");
  EXPECT_EQ(t.token_id("<s>x"), 301);
  EXPECT_EQ(t.token_id("nope"), std::nullopt);
}

TEST(TokenizerAdded, SingleWord) {
  auto j = tiny_tokenizer({}, {});
  j["added_tokens"] = {{{"id", 300}, {"content", "cat"}, {"single_word", true}}};
  Tokenizer t = load(j);
  EXPECT_EQ(t.encode("a cat"), (std::vector<int32_t>{'a', ' ', 300}));
  EXPECT_EQ(t.encode("cats"), (std::vector<int32_t>{'c', 'a', 't', 's'}));
}

TEST(TokenizerNormalizer, NfcBeforeBpe) {
  auto j = tiny_tokenizer({"\xC3\xA9"}, {{"\xC3", "\xA9"}});
  j["normalizer"] = {{"type", "NFC"}};
  // e + combining acute composes to U+00E9 first.
  EXPECT_EQ(load(j).encode("e\xCC\x81"), (std::vector<int32_t>{256}));
}

TEST(TokenizerDecode, InvalidUtf8BecomesReplacementCharacters) {
  Tokenizer t = load(tiny_tokenizer({}, {}));
  EXPECT_EQ(t.decode({0xF0, 0x9F, 0xA6}), "\xEF\xBF\xBD");  // one cut-off character
  EXPECT_EQ(t.decode({0xC0, 0xAF}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(t.decode({0xF0, 0x9F, 0xA6, 0x99}), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(t.token_bytes(0xFF), "\xFF");
  EXPECT_THROW(t.decode({999}), Error);
  // Invalid input bytes are encoded as U+FFFD.
  EXPECT_EQ(t.decode(t.encode("a\xFF")), "a\xEF\xBF\xBD");
}

TEST(Streaming, HoldsSplitCharactersBack) {
  Tokenizer t = load(tiny_tokenizer({}, {}));
  StreamingDecoder s(t);
  const std::string text = "\xC3\xA9\xF0\x9F\xA6\x99!";  // é 🦙 !
  std::vector<std::string> pieces;
  for (char c : text) pieces.push_back(s.push(uint8_t(c)));
  EXPECT_EQ(pieces,
            (std::vector<std::string>{"", "\xC3\xA9", "", "", "", "\xF0\x9F\xA6\x99", "!"}));
  EXPECT_EQ(s.flush(), "");
  // A character never completed comes out as U+FFFD at flush; an invalid byte at once.
  EXPECT_EQ(s.push(0xE2), "");
  EXPECT_EQ(s.push(0x82), "");
  EXPECT_EQ(s.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(s.push(0xFF), "\xEF\xBF\xBD");
  EXPECT_EQ(s.push(0xE2), "");
  EXPECT_EQ(s.push('a'),
            "\xEF\xBF\xBD"
            "a");
}

TEST(TokenizerErrors, BadJsonAndUnsupportedModels) {
  try {
    Tokenizer::from_json("{not json", "bad.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json is not valid JSON"), std::string::npos);
  }
  EXPECT_THROW(Tokenizer::from_json("[1,2]", "x.json"), Error);
  auto wp = tiny_tokenizer({}, {});
  wp["model"]["type"] = "WordPiece";
  EXPECT_THROW(load(wp), Error);
  auto meta = tiny_tokenizer({}, {});
  meta["pre_tokenizer"] = {{"type", "Metaspace"}};
  meta["decoder"] = nullptr;
  EXPECT_THROW(load(meta), Error);
  auto bad_merge = tiny_tokenizer({}, {{"a", "b"}});  // "ab" is not in the vocabulary
  EXPECT_THROW(load(bad_merge), Error);
  EXPECT_THROW(Tokenizer::from_json_file("/nonexistent/tokenizer.json"), Error);
  EXPECT_THROW(Tokenizer::from_path("/nonexistent/model.gguf"), Error);

  const auto dir = std::filesystem::temp_directory_path() / "kvo_tok_notjson";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << "<html>not json</html>";
  EXPECT_THROW(Tokenizer::from_path(dir.string()), Error);
  std::filesystem::remove_all(dir);
}

// --- GGUF metadata ----------------------------------------------------------------------

class GgufBuilder {
 public:
  void str(const std::string& key, const std::string& v) {
    key_(key, 8);
    string_(v);
  }
  void u32(const std::string& key, uint32_t v) {
    key_(key, 4);
    pod(v);
  }
  void strings(const std::string& key, const std::vector<std::string>& v) {
    key_(key, 9);
    pod(uint32_t(8));
    pod(uint64_t(v.size()));
    for (const auto& s : v) string_(s);
  }
  void i32s(const std::string& key, const std::vector<int32_t>& v) {
    key_(key, 9);
    pod(uint32_t(5));
    pod(uint64_t(v.size()));
    for (int32_t x : v) pod(x);
  }
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out;
    auto put = [&](const void* p, size_t n) {
      out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    };
    put("GGUF", 4);
    const uint32_t version = 3;
    const uint64_t tensors = 0;
    put(&version, 4);
    put(&tensors, 8);
    put(&count_, 8);
    out.insert(out.end(), body_.begin(), body_.end());
    while (out.size() % 32) out.push_back(0);
    return out;
  }

 private:
  template <typename T>
  void pod(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    body_.insert(body_.end(), p, p + sizeof(T));
  }
  void string_(const std::string& s) {
    pod(uint64_t(s.size()));
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void key_(const std::string& key, uint32_t type) {
    ++count_;
    string_(key);
    pod(type);
  }
  std::vector<uint8_t> body_;
  uint64_t count_ = 0;
};

GgufBuilder tiny_gguf(const std::string& model, const std::string& pre) {
  GgufBuilder g;
  g.str("general.architecture", "llama");
  g.str("tokenizer.ggml.model", model);
  g.str("tokenizer.ggml.pre", pre);
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(byte_level::encode(std::string(1, char(b))));
    types.push_back(1);
  }
  for (const char* extra : {" 1", "12", "<|im_end|>", "<user>"}) {
    tokens.push_back(std::string(extra)[0] == '<' ? extra : byte_level::encode(extra));
  }
  types.insert(types.end(), {1, 1, 3, 4});
  g.strings("tokenizer.ggml.tokens", tokens);
  g.i32s("tokenizer.ggml.token_type", types);
  g.strings("tokenizer.ggml.merges",
            {byte_level::encode(" ") + " " + byte_level::encode("1"), "1 2"});
  g.u32("tokenizer.ggml.bos_token_id", 258);
  g.u32("tokenizer.ggml.eos_token_id", 258);
  g.str("tokenizer.chat_template", "{{ '<|im_start|>' }}");
  return g;
}

Tokenizer gguf_tokenizer(const GgufBuilder& g) {
  const std::vector<uint8_t> bytes = g.bytes();
  return Tokenizer::from_gguf(GgufFile::parse_bytes(bytes.data(), bytes.size(), "tiny.gguf"));
}

TEST(TokenizerGguf, PreTypesChooseTheSplit) {
  // smollm isolates digits: " 12" -> " ", "1", "2"; gpt2 keeps " 12" one word -> " 1", "2".
  EXPECT_EQ(gguf_tokenizer(tiny_gguf("gpt2", "smollm")).encode(" 12"),
            (std::vector<int32_t>{' ', '1', '2'}));
  EXPECT_EQ(gguf_tokenizer(tiny_gguf("gpt2", "gpt2")).encode(" 12"),
            (std::vector<int32_t>{256, '2'}));
  // llama-bpe: digits in runs of up to three, space apart from digits.
  EXPECT_EQ(gguf_tokenizer(tiny_gguf("gpt2", "llama-bpe")).encode(" 12"),
            (std::vector<int32_t>{' ', 257}));
}

TEST(TokenizerGguf, ControlAndUserDefinedTokens) {
  Tokenizer t = gguf_tokenizer(tiny_gguf("gpt2", "qwen2"));
  EXPECT_EQ(t.encode("a<|im_end|><user>b"), (std::vector<int32_t>{'a', 258, 259, 'b'}));
  EXPECT_TRUE(t.is_special(258));
  EXPECT_FALSE(t.is_special(259));
  EXPECT_EQ(t.bos_id(), 258);
  EXPECT_EQ(t.eos_id(), 258);
  EXPECT_EQ(t.chat_template_source(), "{{ '<|im_start|>' }}");
  EXPECT_EQ(t.decode({259, ' '}), "<user> ");
}

TEST(TokenizerGguf, UnsupportedModelsAreNamed) {
  try {
    gguf_tokenizer(tiny_gguf("llama", "default"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'llama' is not supported"), std::string::npos);
  }
  EXPECT_THROW(gguf_tokenizer(tiny_gguf("gpt2", "made-up-pre")), Error);
  GgufBuilder empty;
  empty.str("general.architecture", "llama");
  EXPECT_THROW(gguf_tokenizer(empty), Error);
}

TEST(TokenizerRegex, WhitespaceIsUnicodeWhiteSpaceAsInHf) {
  // PCRE2 alone would count U+180E as \s; HF's engines do not, and splits must agree.
  auto matches = [](const std::string& pattern, const std::string& text) {
    std::vector<std::pair<size_t, size_t>> out;
    Regex(pattern).find_all(text, out);
    return out;
  };
  EXPECT_TRUE(matches(R"(\s+)", "\xE1\xA0\x8E").empty());
  EXPECT_EQ(matches(R"(\s+)", "a\xE3\x80\x80\xC2\x85 b").size(), 1u);
  EXPECT_EQ(matches(R"([^\s\p{L}]+)", "\xE1\xA0\x8E!").size(), 1u);
  EXPECT_EQ(matches(R"(\S+)", "ab \xE1\xA0\x8E").size(), 2u);
  EXPECT_EQ(matches(R"([]a]+)", "]a]").size(), 1u);
  EXPECT_THROW(Regex("(unclosed"), Error);
}

TEST(TokenizerUtf8, CompletePrefixAndValidity) {
  EXPECT_EQ(utf8::complete_prefix("ab\xF0\x9F"), 2u);
  EXPECT_EQ(utf8::complete_prefix("ab\xF0\x9F\xA6\x99"), 6u);
  EXPECT_EQ(utf8::complete_prefix("\xF0\x41"), 2u);
  EXPECT_TRUE(utf8::is_valid("\xE4\xB8\xAD"));
  EXPECT_FALSE(utf8::is_valid("\xED\xA0\x80"));  // a surrogate
  EXPECT_EQ(utf8::to_valid("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

// Mutated tokenizer.json files (fuzz.h): each loads or raises kvo::Error, and what loads encodes
// and decodes a text without any other exception.
TEST(TokenizerFuzz, MutatedJsonLoadsOrRaisesError) {
  nlohmann::json seed = tiny_tokenizer({"ab", "bc", "abc", " the"}, {{"b", "c"}, {"a", "b"}});
  seed["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
  seed["added_tokens"] = {{{"id", 260}, {"content", "<|end|>"}, {"special", true}}};
  // clang-format off
  const std::vector<std::string> tokens = {
      "{", "}", "[", "]", ",", ":", "\"", " ", "", "null", "true", "0", "-1", "300", "1e999",
      "\"type\"", "\"BPE\"", "\"ByteLevel\"", "\"Sequence\"", "\"Split\"", "\"NFKC\"",
      "\"pretokenizers\"", "\"normalizers\"", "\"merges\"", "\"vocab\"", "\"pattern\"",
      "{\"Regex\": \"(\"}", "\"content\"", "\"id\"", "\"special\"", "\"a b\""};
  // clang-format on
  int accepted = 0, rejected = 0;
  test::fuzz_texts(
      std::vector<std::string>{seed.dump()}, tokens, test::fuzz_seed_or(17),
      [](const std::string& text) {
        const Tokenizer t = Tokenizer::from_json(text, "tokenizer.json");
        t.decode(t.encode("abc the <|end|> \xc3\xa9!"));
      },
      &accepted, &rejected);
  EXPECT_EQ(accepted + rejected, test::fuzz_iterations());
  EXPECT_GT(accepted, test::fuzz_iterations() / 50);
  EXPECT_GT(rejected, test::fuzz_iterations() / 4);
}

}  // namespace
}  // namespace kvo
