// UTF-8 helpers shared by the tokenizer pieces: validation with replacement, completeness of a
// byte stream's tail (for streaming), code point encoding and Unicode normalization.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvo::utf8 {

// Appends the UTF-8 encoding of one code point.
void append(std::string& out, char32_t cp);

// Length of the well-formed sequence starting at s[i]; 0 when s[i] starts no valid character
// (an incomplete tail counts as invalid).
size_t valid_length(std::string_view s, size_t i);

// Replaces every ill-formed subsequence with U+FFFD, one per maximal subpart (the Unicode
// recommendation, also what Rust's String::from_utf8_lossy and thus HF tokenizers do).
std::string to_valid(std::string_view bytes);
bool is_valid(std::string_view bytes);

// Length of the longest prefix of `bytes` that does not end in the middle of a character that
// could still be completed by more bytes. Invalid bytes are not held back.
size_t complete_prefix(std::string_view bytes);

enum class Normalization { None, NFC, NFD, NFKC, NFKD };
// Input must be valid UTF-8.
std::string normalize(std::string_view text, Normalization form);

}  // namespace kvo::utf8
