// Chat prompt formats. Chosen from the model (architecture + tokenizer's template text) and
// overridable with --chat-template NAME.
#pragma once
#include <string>
#include <vector>

namespace kvo {

// Llama3: the plain Llama 3 template (BOS, a header per message, content trimmed), as in
// ../shared/data/tokenizers/llama3.1/tokenizer_config.json. Llama31: Meta's Llama 3.1 template
// with its always-present system header ("Cutting Knowledge Date: December 2023\nToday Date:
// 26 Jul 2024", the template's fixed date). Qwen3: ChatML with thinking disabled. ChatML:
// SmolLM2's template, which adds its default system prompt when none is given.
enum class ChatFormat { Llama3, Qwen3, ChatML, Llama31 };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// "llama3", "llama3.1", "qwen3" (thinking disabled), "chatml" (SmolLM2, Qwen2); kvo::Error
// otherwise.
ChatFormat parse_chat_format(const std::string& name);
const char* chat_format_name(ChatFormat format);
// Picks the format from the template source text (and architecture name as a fallback).
ChatFormat detect_chat_format(const std::string& template_source, const std::string& arch_name);
// Renders the messages and opens the assistant turn (add_generation_prompt=True), exactly as
// the model's HF chat template does. Includes the BOS text where the template writes it.
std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages);
// Text of the tokens that end an assistant turn in this format (e.g. "<|eot_id|>").
std::vector<std::string> chat_stop_tokens(ChatFormat format);

}  // namespace kvo
