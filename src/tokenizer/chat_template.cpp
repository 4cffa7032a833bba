// The three chat formats, written out by hand to render exactly what the models' jinja
// templates render with add_generation_prompt=True (checked against HF apply_chat_template in
// tests/fixtures/tokenizer/). A jinja interpreter would be more general but is not needed for
// the formats we serve.
#include "tokenizer/chat_template.h"

#include <algorithm>
#include <cctype>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace kvo {
namespace {

// Python's str.isspace() code points, since jinja's trim is Python's str.strip().
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Decodes the code point at s[i] (valid UTF-8 assumed, invalid bytes count as one non-space).
char32_t code_point_at(std::string_view s, size_t i, size_t* len) {
  const size_t n = utf8::valid_length(s, i);
  if (n == 0) {
    *len = 1;
    return 0xFFFD;
  }
  *len = n;
  const auto b = [&](size_t k) { return char32_t(uint8_t(s[i + k])); };
  switch (n) {
    case 1:
      return b(0);
    case 2:
      return (b(0) & 0x1F) << 6 | (b(1) & 0x3F);
    case 3:
      return (b(0) & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F);
    default:
      return (b(0) & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
  }
}

std::string python_strip(std::string_view s) {
  size_t begin = 0, end = s.size();
  while (begin < end) {
    size_t len;
    if (!is_python_space(code_point_at(s, begin, &len))) break;
    begin += len;
  }
  while (end > begin) {
    size_t start = end - 1;  // step back to the lead byte of the last character
    while (start > begin && (uint8_t(s[start]) & 0xC0) == 0x80) --start;
    size_t len;
    if (!is_python_space(code_point_at(s, start, &len)) || start + len != end) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

std::string strip_chars(std::string_view s, char c, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left) {
    while (b < e && s[b] == c) ++b;
  }
  if (right) {
    while (e > b && s[e - 1] == c) --e;
  }
  return std::string(s.substr(b, e - b));
}

std::string render_llama3(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += "<|begin_of_text|>";
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" +
           python_strip(messages[i].content) + "<|eot_id|>";
  }
  out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Meta's Llama 3.1 template without tools: a system block always, dated with the template's
// own default.
std::string render_llama31(const std::vector<ChatMessage>& messages) {
  size_t first = 0;
  std::string system;
  if (!messages.empty() && messages[0].role == "system") {
    system = python_strip(messages[0].content);
    first = 1;
  }
  std::string out =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
      "December 2023\nToday Date: 26 Jul 2024\n\n" +
      system + "<|eot_id|>";
  for (size_t i = first; i < messages.size(); ++i) {
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" +
           python_strip(messages[i].content) + "<|eot_id|>";
  }
  out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

bool is_tool_response(const std::string& c) {
  return c.starts_with("<tool_response>") && c.ends_with("</tool_response>");
}

std::string render_qwen3(const std::vector<ChatMessage>& messages) {
  std::string out;
  if (!messages.empty() && messages[0].role == "system") {
    out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  }
  // The last real user query: reasoning is only replayed for assistant turns after it.
  size_t last_query = messages.empty() ? 0 : messages.size() - 1;
  for (size_t k = messages.size(); k-- > 0;) {
    if (messages[k].role == "user" && !is_tool_response(messages[k].content)) {
      last_query = k;
      break;
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& msg = messages[i];
    const bool last = i + 1 == messages.size();
    if (msg.role == "user" || (msg.role == "system" && i != 0)) {
      out += "<|im_start|>" + msg.role + "\n" + msg.content + "<|im_end|>\n";
    } else if (msg.role == "assistant") {
      std::string content = msg.content, reasoning;
      const size_t close = msg.content.rfind("</think>");
      if (close != std::string::npos) {
        content = strip_chars(std::string_view(msg.content).substr(close + 8), '\n', true, false);
        std::string before =
            strip_chars(std::string_view(msg.content).substr(0, msg.content.find("</think>")), '\n',
                        false, true);
        const size_t open = before.rfind("<think>");
        if (open != std::string::npos) before = before.substr(open + 7);
        reasoning = strip_chars(before, '\n', true, false);
      }
      if (i > last_query && (last || !reasoning.empty())) {
        out += "<|im_start|>assistant\n<think>\n" + strip_chars(reasoning, '\n', true, true) +
               "\n</think>\n\n" + strip_chars(content, '\n', true, false);
      } else {
        out += "<|im_start|>assistant\n" + content;
      }
      out += "<|im_end|>\n";
    } else if (msg.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + msg.content + "\n</tool_response>";
      if (last || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    }
  }
  out += "<|im_start|>assistant\n<think>\n\n</think>\n\n";
  return out;
}

std::string render_chatml(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0 && messages[0].role != "system") {
      out +=
          "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
          "Face<|im_end|>\n";
    }
    out += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
  }
  out += "<|im_start|>assistant\n";
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

ChatFormat parse_chat_format(const std::string& name) {
  const std::string n = lower(name);
  if (n == "llama3" || n == "llama-3") return ChatFormat::Llama3;
  if (n == "llama3.1" || n == "llama3.2" || n == "llama3.3") return ChatFormat::Llama31;
  if (n == "qwen3") return ChatFormat::Qwen3;
  if (n == "chatml" || n == "smollm2" || n == "smollm") return ChatFormat::ChatML;
  fail("unknown chat template '{}' (choose llama3, llama3.1, qwen3 or chatml)", name);
}

const char* chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::Llama3:
      return "llama3";
    case ChatFormat::Llama31:
      return "llama3.1";
    case ChatFormat::Qwen3:
      return "qwen3";
    case ChatFormat::ChatML:
      return "chatml";
  }
  return "?";
}

ChatFormat detect_chat_format(const std::string& source, const std::string& arch_name) {
  if (source.find("<|start_header_id|>") != std::string::npos) {
    return source.find("Cutting Knowledge Date") != std::string::npos ? ChatFormat::Llama31
                                                                      : ChatFormat::Llama3;
  }
  if (source.find("<|im_start|>") != std::string::npos) {
    const bool thinks = source.find("enable_thinking") != std::string::npos ||
                        source.find("<think>") != std::string::npos;
    return thinks ? ChatFormat::Qwen3 : ChatFormat::ChatML;
  }
  // No (recognised) template: go by the architecture.
  const std::string arch = lower(arch_name);
  if (arch.find("qwen3") != std::string::npos) return ChatFormat::Qwen3;
  if (arch.find("qwen") != std::string::npos) return ChatFormat::ChatML;
  if (arch.find("llama") != std::string::npos) return ChatFormat::Llama3;
  return ChatFormat::ChatML;
}

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages) {
  switch (format) {
    case ChatFormat::Llama3:
      return render_llama3(messages);
    case ChatFormat::Llama31:
      return render_llama31(messages);
    case ChatFormat::Qwen3:
      return render_qwen3(messages);
    case ChatFormat::ChatML:
      return render_chatml(messages);
  }
  fail("unknown chat format");
}

std::vector<std::string> chat_stop_tokens(ChatFormat format) {
  switch (format) {
    case ChatFormat::Llama3:
    case ChatFormat::Llama31:
      return {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"};
    case ChatFormat::Qwen3:
    case ChatFormat::ChatML:
      return {"<|im_end|>", "<|endoftext|>"};
  }
  return {};
}

}  // namespace kvo
