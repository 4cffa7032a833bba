#include "tokenizer/tokenizer.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace kvo {

void Tokenizer::Impl::finish(const std::vector<std::pair<std::string, std::string>>& merges,
                             bool ignore_merges) {
  bpe = std::make_unique<BpeModel>(pieces, merges, ignore_merges, where);
  // Added tokens may lie outside the model's vocabulary (Llama 3's 256 specials do).
  for (const AddedToken& t : added.tokens()) {
    if (size_t(t.id) >= pieces.size()) pieces.resize(size_t(t.id) + 1);
    pieces[t.id] = t.content;
  }
  bytes.resize(pieces.size());
  special.assign(pieces.size(), 0);
  piece_to_id.reserve(pieces.size());
  for (size_t id = 0; id < pieces.size(); ++id) {
    if (pieces[id].empty()) continue;
    piece_to_id.emplace(pieces[id], int32_t(id));
    // HF's ByteLevel decoder maps a token through the byte table when every character is in
    // it, and otherwise keeps the token's own text; added tokens follow the same rule.
    auto raw = byte_level::decode(pieces[id]);
    bytes[id] = raw ? std::move(*raw) : pieces[id];
  }
  for (const AddedToken& t : added.tokens()) {
    special[t.id] = t.special;
    piece_to_id[t.content] = t.id;
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view input) const {
  const Impl& m = *impl_;
  // Invalid bytes become U+FFFD rather than an error: prompts come from arbitrary files.
  std::string repaired;
  std::string_view text = input;
  if (!utf8::is_valid(input)) {
    repaired = utf8::to_valid(input);
    text = repaired;
  }
  std::vector<int32_t> ids;
  std::vector<AddedTokenMatcher::Segment> segments;
  m.added.split(text, segments);
  std::vector<std::string_view> words;
  for (const auto& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    std::string normalized(seg.text);
    for (utf8::Normalization form : m.normalizers) normalized = utf8::normalize(normalized, form);
    if (m.pre.add_prefix_space() && !normalized.empty() && normalized[0] != ' ') {
      normalized.insert(normalized.begin(), ' ');
    }
    words.clear();
    m.pre.split(normalized, words);
    for (std::string_view w : words) m.bpe->encode_word(w, ids);
  }
  return ids;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  check(id >= 0 && size_t(id) < impl_->bytes.size(),
        "token id {} is outside the vocabulary (0..{})", id, impl_->bytes.size() - 1);
  return impl_->bytes[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string raw;
  for (int32_t id : ids) {
    check(id >= 0 && size_t(id) < impl_->bytes.size(),
          "token id {} is outside the vocabulary (0..{})", id, impl_->bytes.size() - 1);
    raw += impl_->bytes[id];
  }
  return utf8::to_valid(raw);
}

int32_t Tokenizer::vocab_size() const {
  return int32_t(impl_->pieces.size());
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  auto it = impl_->piece_to_id.find(std::string(token_text));
  if (it == impl_->piece_to_id.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::token_piece(int32_t id) const {
  check(id >= 0 && size_t(id) < impl_->pieces.size(),
        "token id {} is outside the vocabulary (0..{})", id, impl_->pieces.size() - 1);
  return impl_->pieces[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->special.size() && impl_->special[id];
}
int32_t Tokenizer::bos_id() const {
  return impl_->bos;
}
int32_t Tokenizer::eos_id() const {
  return impl_->eos;
}
const std::string& Tokenizer::chat_template_source() const {
  return impl_->chat_template;
}

}  // namespace kvo
