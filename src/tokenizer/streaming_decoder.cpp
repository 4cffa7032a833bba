#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace kvo {

std::string StreamingDecoder::push(int32_t id) {
  pending_ += tokenizer_.token_bytes(id);
  const size_t n = utf8::complete_prefix(pending_);
  if (n == 0) return {};
  std::string out = utf8::to_valid(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamingDecoder::flush() {
  std::string out = utf8::to_valid(pending_);
  pending_.clear();
  return out;
}

}  // namespace kvo
