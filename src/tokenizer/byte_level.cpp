#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace kvo::byte_level {
namespace {

struct Tables {
  std::array<std::string, 256> byte_to_text;
  std::array<int, 324> cp_to_byte;  // every mapped code point is below 256 + 68

  Tables() {
    cp_to_byte.fill(-1);
    // Printable Latin-1 bytes keep their own code point; the 68 others are numbered from 256
    // upwards in byte order.
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const int cp = printable ? b : next++;
      utf8::append(byte_to_text[b], char32_t(cp));
      cp_to_byte[cp] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

std::string encode(std::string_view bytes) {
  const Tables& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.byte_to_text[uint8_t(c)];
  return out;
}

std::optional<std::string> decode(std::string_view text) {
  const Tables& t = tables();
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const uint8_t b0 = uint8_t(text[i]);
    char32_t cp;
    if (b0 < 0x80) {
      cp = b0;
      i += 1;
    } else if ((b0 & 0xE0) == 0xC0 && i + 1 < text.size()) {
      cp = char32_t(b0 & 0x1F) << 6 | (uint8_t(text[i + 1]) & 0x3F);
      i += 2;
    } else {
      return std::nullopt;  // every mapped code point is below U+0800
    }
    if (cp >= t.cp_to_byte.size() || t.cp_to_byte[cp] < 0) return std::nullopt;
    out += char(t.cp_to_byte[cp]);
  }
  return out;
}

}  // namespace kvo::byte_level
