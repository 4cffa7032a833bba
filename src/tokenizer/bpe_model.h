// The BPE model proper: turns the raw bytes of one pre-tokenized word into vocabulary ids by
// applying merges lowest rank first. Words seen before are served from a cache.
#pragma once
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kvo {

class BpeModel {
 public:
  // `pieces[id]` is the byte-level spelling of vocabulary entry id ("" for unused ids);
  // `merges` are pairs of spellings in rank order. With `ignore_merges`, a word that is itself
  // a vocabulary entry becomes that entry without merging (Llama 3).
  BpeModel(const std::vector<std::string>& pieces,
           const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
           const std::string& where);

  // Appends the ids of one word given as raw bytes.
  void encode_word(std::string_view bytes, std::vector<int32_t>& out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return uint64_t(uint32_t(a)) << 32 | uint32_t(b);
  }
  void merge_word(std::string_view bytes, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> bytes_to_id_;  // raw bytes of each entry
  std::array<int32_t, 256> byte_id_;                      // single-byte entries, -1 if absent
  std::unordered_map<uint64_t, Merge> merges_;
  bool ignore_merges_;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace kvo
