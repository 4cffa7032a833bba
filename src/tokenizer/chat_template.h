// Chat prompt formats. Chosen from the model (architecture + tokenizer's template text) and
// overridable with --chat-template NAME.
#pragma once
#include <string>
#include <vector>

namespace kvo {

enum class ChatFormat { Llama3, Qwen3, ChatML };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// "llama3", "qwen3" (thinking disabled), "chatml" (SmolLM2, Qwen2); kvo::Error otherwise.
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
