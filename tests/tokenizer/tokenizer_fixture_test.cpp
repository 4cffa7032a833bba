// Exact agreement with HF tokenizers on the oracle fixtures (tests/oracle/
// make_tokenizer_fixtures.py): ids, decodes of cut-up id lists, and decode(encode(x)) == x.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace kvo {
namespace {
namespace fs = std::filesystem;

const std::string kShared = KVO_SHARED_DIR;
const std::string kFixtures = std::string(KVO_TEST_DATA_DIR) + "/fixtures/tokenizer/";
const std::string kDefaultModel =
    std::string(KVO_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

nlohmann::json load_fixture(const std::string& name) {
  std::ifstream in(kFixtures + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// Source of each fixture's tokenizer; loading one takes a second, so each is loaded once.
std::string source_path(const std::string& name) {
  if (name == "llama3_1") return kShared + "/data/tokenizers/llama3.1/tokenizer.json";
  if (name == "qwen3") return kShared + "/data/tokenizers/qwen3/tokenizer.json";
  return kDefaultModel;
}

const Tokenizer* tokenizer_for(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.get();
  const std::string path = source_path(name);
  std::unique_ptr<Tokenizer> tok;
  if (fs::exists(path)) tok = std::make_unique<Tokenizer>(Tokenizer::from_path(path));
  return (cache[name] = std::move(tok)).get();
}

class TokenizerFixture : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    tok_ = tokenizer_for(GetParam());
    if (!tok_) GTEST_SKIP() << source_path(GetParam()) << " is not available";
    fixture_ = load_fixture(GetParam() + ".json");
  }
  const Tokenizer* tok_ = nullptr;
  nlohmann::json fixture_;
};

TEST_P(TokenizerFixture, EncodeMatchesHf) {
  int checked = 0, wrong = 0;
  for (const auto& c : fixture_.at("encode")) {
    const std::string text = c.at("text");
    const std::vector<int32_t> want = c.at("ids");
    const std::vector<int32_t> got = tok_->encode(text);
    ++checked;
    if (got != want) {
      ++wrong;
      ADD_FAILURE() << "text " << nlohmann::json(text).dump() << "\n  want "
                    << nlohmann::json(want).dump() << "\n  got  " << nlohmann::json(got).dump();
    }
  }
  EXPECT_GE(checked, 40);
  EXPECT_EQ(wrong, 0);
}

TEST_P(TokenizerFixture, DecodeMatchesHf) {
  for (const auto& c : fixture_.at("decode")) {
    const std::vector<int32_t> ids = c.at("ids");
    EXPECT_EQ(tok_->decode(ids), c.at("text").get<std::string>()) << nlohmann::json(ids).dump();
  }
}

TEST_P(TokenizerFixture, RoundTrip) {
  const bool nfc = GetParam() == "qwen3";
  for (const auto& c : fixture_.at("encode")) {
    const std::string text = c.at("text");
    const std::string want = nfc ? utf8::normalize(text, utf8::Normalization::NFC) : text;
    EXPECT_EQ(tok_->decode(tok_->encode(text)), want);
  }
}

TEST_P(TokenizerFixture, StreamingDecoderMatchesDecode) {
  for (const auto& c : fixture_.at("encode")) {
    const std::vector<int32_t> ids = c.at("ids");
    StreamingDecoder stream(*tok_);
    std::string joined;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_TRUE(utf8::is_valid(piece));
      joined += piece;
    }
    joined += stream.flush();
    EXPECT_EQ(joined, tok_->decode(ids));
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerFixture,
                         ::testing::Values("llama3_1", "qwen3", "smollm2"));

TEST(TokenizerModels, SpecialIdsAndTemplates) {
  if (const Tokenizer* t = tokenizer_for("llama3_1")) {
    EXPECT_EQ(t->bos_id(), 128000);
    EXPECT_EQ(t->eos_id(), 128009);
    EXPECT_EQ(t->vocab_size(), 128256);
    EXPECT_EQ(t->token_id("<|eot_id|>"), 128009);
    EXPECT_TRUE(t->is_special(128009));
    EXPECT_FALSE(t->is_special(9906));
    EXPECT_NE(t->chat_template_source().find("<|start_header_id|>"), std::string::npos);
  }
  if (const Tokenizer* t = tokenizer_for("qwen3")) {
    EXPECT_EQ(t->bos_id(), -1);
    EXPECT_EQ(t->eos_id(), 151645);
    EXPECT_EQ(t->token_id("<tool_call>"), 151657);
    EXPECT_FALSE(t->is_special(151657));  // added but not special
    EXPECT_NE(t->chat_template_source().find("enable_thinking"), std::string::npos);
  }
}

TEST(TokenizerModels, DefaultGgufModel) {
  const Tokenizer* t = tokenizer_for("smollm2");
  if (!t) GTEST_SKIP() << "run scripts/setup to fetch " << kDefaultModel;
  EXPECT_EQ(t->vocab_size(), 49152);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_TRUE(t->is_special(2));
  EXPECT_EQ(t->token_id("<|im_end|>"), 2);
  EXPECT_EQ(t->encode("Hello world"), (std::vector<int32_t>{19556, 905}));
  EXPECT_NE(t->chat_template_source().find("SmolLM"), std::string::npos);
}

}  // namespace
}  // namespace kvo
