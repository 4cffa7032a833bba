// GPT-2's reversible byte <-> code point map: byte-level BPE vocabularies spell every byte as a
// printable character (space -> 'Ġ', newline -> 'Ċ', ...), so merges and vocab entries are text.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace kvo::byte_level {

// The UTF-8 spelling of `bytes` with every byte replaced by its printable character.
std::string encode(std::string_view bytes);
// The bytes a vocabulary entry spells; nullopt when a character is outside the map (the entry
// is then not byte-level text, e.g. an added token written with a plain space).
std::optional<std::string> decode(std::string_view text);

}  // namespace kvo::byte_level
