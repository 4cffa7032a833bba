// Added tokens (special and not) are found in the raw text before normalization and
// pre-tokenization, so "<|im_start|>" typed in a prompt becomes one id, as in HF tokenizers.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvo {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;       // the match also swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
};

class AddedTokenMatcher {
 public:
  void add(const AddedToken& token);
  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

  // Either a stretch of plain text (id < 0) or one added token.
  struct Segment {
    std::string_view text;
    int32_t id;
  };
  // Leftmost-longest matching over the whole text, like HF's AddedVocabulary.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token = -1;  // index into tokens_
  };
  int32_t child(int32_t node, uint8_t byte) const;
  bool acceptable(const AddedToken& t, std::string_view text, size_t b, size_t e) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_{Node{}};
  bool first_byte_[256] = {};
};

}  // namespace kvo
