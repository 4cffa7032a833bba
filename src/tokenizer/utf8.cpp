#include "tokenizer/utf8.h"

#include <utf8proc.h>

#include <cstdlib>

#include "util/error.h"

namespace kvo::utf8 {
namespace {

// How many bytes a lead byte announces and the allowed range of the first continuation byte
// (the narrowed ranges exclude overlongs, surrogates and code points above U+10FFFF).
struct Lead {
  int length;
  uint8_t lo, hi;
};

Lead lead_info(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes from s[i] that form a valid (possibly incomplete) prefix of a character.
size_t valid_prefix(std::string_view s, size_t i, int* expected) {
  const Lead lead = lead_info(uint8_t(s[i]));
  *expected = lead.length;
  if (lead.length == 0) return 0;
  size_t n = 1;
  while (n < size_t(lead.length) && i + n < s.size()) {
    const uint8_t c = uint8_t(s[i + n]);
    const bool ok = n == 1 ? (c >= lead.lo && c <= lead.hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) break;
    ++n;
  }
  return n;
}

}  // namespace

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

size_t valid_length(std::string_view s, size_t i) {
  int expected = 0;
  const size_t n = valid_prefix(s, i, &expected);
  return expected > 0 && n == size_t(expected) ? n : 0;
}

std::string to_valid(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    int expected = 0;
    const size_t n = valid_prefix(bytes, i, &expected);
    if (expected > 0 && n == size_t(expected)) {
      out.append(bytes.data() + i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += n == 0 ? 1 : n;
    }
  }
  return out;
}

bool is_valid(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size();) {
    const size_t n = valid_length(bytes, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t complete_prefix(std::string_view bytes) {
  // Only the last (at most 3) bytes can start an unfinished character.
  const size_t start = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t i = start; i < bytes.size(); ++i) {
    if ((uint8_t(bytes[i]) & 0xC0) == 0x80) continue;  // continuation bytes belong to a lead
    int expected = 0;
    const size_t n = valid_prefix(bytes, i, &expected);
    if (expected > 1 && n == bytes.size() - i && n < size_t(expected)) return i;
  }
  return bytes.size();
}

std::string normalize(std::string_view text, Normalization form) {
  if (form == Normalization::None || text.empty()) return std::string(text);
  int options = UTF8PROC_STABLE;
  switch (form) {
    case Normalization::NFC:
      options |= UTF8PROC_COMPOSE;
      break;
    case Normalization::NFD:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case Normalization::NFKC:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case Normalization::NFKD:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
    case Normalization::None:
      break;
  }
  utf8proc_uint8_t* out = nullptr;
  // An explicit length (no UTF8PROC_NULLTERM) so that NUL characters in the text survive.
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   utf8proc_ssize_t(text.size()), &out, utf8proc_option_t(options));
  if (n < 0) fail("Unicode normalization failed: {}", utf8proc_errmsg(n));
  std::string result(reinterpret_cast<const char*>(out), size_t(n));
  std::free(out);
  return result;
}

}  // namespace kvo::utf8
