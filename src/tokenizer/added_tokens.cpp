#include "tokenizer/added_tokens.h"

namespace kvo {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// A byte that continues a word for single_word tokens: ASCII alphanumerics and '_', and any
// non-ASCII byte (letters of other scripts, approximated).
bool is_word_byte(char c) {
  const auto u = uint8_t(c);
  return u >= 0x80 || (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
         c == '_';
}

}  // namespace

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  for (const auto& [b, next] : trie_[node].children) {
    if (b == byte) return next;
  }
  return -1;
}

void AddedTokenMatcher::add(const AddedToken& token) {
  if (token.content.empty()) return;
  int32_t node = 0;
  for (char c : token.content) {
    int32_t next = child(node, uint8_t(c));
    if (next < 0) {
      next = int32_t(trie_.size());
      trie_[node].children.emplace_back(uint8_t(c), next);
      trie_.push_back(Node{});
    }
    node = next;
  }
  // The same text declared twice keeps its first id.
  if (trie_[node].token >= 0) return;
  trie_[node].token = int32_t(tokens_.size());
  tokens_.push_back(token);
  first_byte_[uint8_t(token.content[0])] = true;
}

bool AddedTokenMatcher::acceptable(const AddedToken& t, std::string_view text, size_t b,
                                   size_t e) const {
  if (!t.single_word) return true;
  const bool word_before = b > 0 && is_word_byte(text[b - 1]);
  const bool word_after = e < text.size() && is_word_byte(text[e]);
  return !word_before && !word_after;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t plain_start = 0;  // start of the pending plain-text stretch
  size_t i = 0;
  while (i < text.size()) {
    if (!first_byte_[uint8_t(text[i])]) {
      ++i;
      continue;
    }
    int32_t best = -1;
    size_t best_end = 0;
    int32_t node = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = child(node, uint8_t(text[j]));
      if (node < 0) break;
      const int32_t t = trie_[node].token;
      if (t >= 0 && acceptable(tokens_[t], text, i, j + 1)) {
        best = t;
        best_end = j + 1;
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[best];
    size_t b = i, e = best_end;
    if (tok.lstrip) {
      while (b > plain_start && is_space(text[b - 1])) --b;
    }
    if (tok.rstrip) {
      while (e < text.size() && is_space(text[e])) ++e;
    }
    if (b > plain_start) out.push_back({text.substr(plain_start, b - plain_start), -1});
    out.push_back({text.substr(b, e - b), tok.id});
    plain_start = i = e;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1});
}

}  // namespace kvo
