// Rendered chat prompts must equal HF apply_chat_template(add_generation_prompt=True) byte for
// byte (fixtures from tests/oracle/make_tokenizer_fixtures.py).
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "util/error.h"

namespace kvo {
namespace {

const std::string kFixtures = std::string(KVO_TEST_DATA_DIR) + "/fixtures/tokenizer/";

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void expect_fixture_chats(const std::string& fixture, ChatFormat format) {
  const nlohmann::json j = nlohmann::json::parse(read(kFixtures + fixture));
  ASSERT_GE(j.at("chat").size(), 5u);
  for (const auto& c : j.at("chat")) {
    std::vector<ChatMessage> messages;
    for (const auto& m : c.at("messages")) messages.push_back({m.at("role"), m.at("content")});
    EXPECT_EQ(render_chat(format, messages), c.at("text").get<std::string>());
  }
}

TEST(ChatTemplate, Llama3MatchesHf) {
  expect_fixture_chats("llama3_1.json", ChatFormat::Llama3);
}
TEST(ChatTemplate, Qwen3NoThinkingMatchesHf) {
  expect_fixture_chats("qwen3.json", ChatFormat::Qwen3);
}
TEST(ChatTemplate, SmolLM2ChatMLMatchesHf) {
  expect_fixture_chats("smollm2.json", ChatFormat::ChatML);
}

TEST(ChatTemplate, Qwen3ReplaysReasoningOnlyAfterTheLastQuery) {
  const std::vector<ChatMessage> messages = {
      {"user", "Q1"}, {"assistant", "<think>\nold\n</think>\n\nA1"}, {"user", "Q2"}};
  EXPECT_EQ(render_chat(ChatFormat::Qwen3, messages),
            "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
            "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplate, Llama3TrimsUnicodeWhitespaceLikeJinja) {
  EXPECT_EQ(render_chat(ChatFormat::Llama3, {{"user", "\xE3\x80\x80 hi\t\n"}}),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama31DatedSystemHeader) {
  const std::string head =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
      "December 2023\nToday Date: 26 Jul 2024\n\n";
  const std::string tail =
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(render_chat(ChatFormat::Llama31, {{"user", " Hi "}}), head + "<|eot_id|>" + tail);
  EXPECT_EQ(render_chat(ChatFormat::Llama31, {{"system", "Be brief.\n"}, {"user", "Hi"}}),
            head + "Be brief.<|eot_id|>" + tail);
  EXPECT_EQ(detect_chat_format("{{- \"Cutting Knowledge Date: December 2023\\n\" }}"
                               "<|start_header_id|>",
                               "llama"),
            ChatFormat::Llama31);
}

TEST(ChatTemplate, DetectsFormatFromTemplateText) {
  const std::string shared = KVO_SHARED_DIR;
  for (const auto& [model, want] :
       {std::pair{"llama3.1", ChatFormat::Llama3}, std::pair{"qwen3", ChatFormat::Qwen3}}) {
    const std::string path = shared + "/data/tokenizers/" + model + "/tokenizer_config.json";
    if (!std::filesystem::exists(path)) continue;
    const auto config = nlohmann::json::parse(read(path));
    EXPECT_EQ(detect_chat_format(config.at("chat_template"), ""), want) << model;
  }
  const std::string smollm =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
      "'<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
      "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
  EXPECT_EQ(detect_chat_format(smollm, "llama"), ChatFormat::ChatML);
  EXPECT_EQ(detect_chat_format("", "qwen3"), ChatFormat::Qwen3);
  EXPECT_EQ(detect_chat_format("", "qwen2"), ChatFormat::ChatML);
  EXPECT_EQ(detect_chat_format("", "llama"), ChatFormat::Llama3);
}

TEST(ChatTemplate, NamesAndStopTokens) {
  for (ChatFormat f :
       {ChatFormat::Llama3, ChatFormat::Llama31, ChatFormat::Qwen3, ChatFormat::ChatML}) {
    EXPECT_EQ(parse_chat_format(chat_format_name(f)), f);
  }
  EXPECT_THROW(parse_chat_format("vicuna"), Error);
  EXPECT_EQ(chat_stop_tokens(ChatFormat::Llama3),
            (std::vector<std::string>{"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}));
  EXPECT_EQ(chat_stop_tokens(ChatFormat::ChatML),
            (std::vector<std::string>{"<|im_end|>", "<|endoftext|>"}));
  EXPECT_EQ(chat_stop_tokens(ChatFormat::Qwen3), chat_stop_tokens(ChatFormat::ChatML));
}

}  // namespace
}  // namespace kvo
