#include "tokenizer/bpe_model.h"

#include <queue>

#include "tokenizer/byte_level.h"
#include "util/error.h"

namespace kvo {
namespace {
// Bounds the cache; long-running servers see an open-ended set of words.
constexpr size_t kCacheEntries = 1 << 18;
constexpr size_t kCacheWordBytes = 256;
}  // namespace

BpeModel::BpeModel(const std::vector<std::string>& pieces,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   bool ignore_merges, const std::string& where)
    : ignore_merges_(ignore_merges) {
  byte_id_.fill(-1);
  std::unordered_map<std::string_view, int32_t> piece_to_id;
  piece_to_id.reserve(pieces.size());
  bytes_to_id_.reserve(pieces.size());
  for (size_t id = 0; id < pieces.size(); ++id) {
    if (pieces[id].empty()) continue;
    piece_to_id.emplace(pieces[id], int32_t(id));
    // Entries outside the byte-level alphabet (added-token text) can never come out of
    // merging bytes, so BPE does not need them.
    if (auto raw = byte_level::decode(pieces[id])) {
      if (raw->size() == 1) byte_id_[uint8_t((*raw)[0])] = int32_t(id);
      bytes_to_id_.emplace(std::move(*raw), int32_t(id));
    }
  }
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = piece_to_id.find(a), ib = piece_to_id.find(b), iab = piece_to_id.find(a + b);
    check(ia != piece_to_id.end() && ib != piece_to_id.end(),
          "{}: merge {} '{} {}' uses a token missing from the vocabulary", where, rank, a, b);
    check(iab != piece_to_id.end(),
          "{}: merge {} '{} {}' makes a token missing from the vocabulary", where, rank, a, b);
    // A repeated pair keeps its first (best) rank.
    merges_.emplace(pair_key(ia->second, ib->second), Merge{int32_t(rank), iab->second});
  }
}

void BpeModel::encode_word(std::string_view bytes, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  if (ignore_merges_) {
    auto it = bytes_to_id_.find(std::string(bytes));
    if (it != bytes_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (bytes.size() == 1) {
    if (byte_id_[uint8_t(bytes[0])] >= 0) out.push_back(byte_id_[uint8_t(bytes[0])]);
    return;
  }
  const bool cacheable = bytes.size() <= kCacheWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(std::string(bytes));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_word(bytes, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheEntries) cache_.clear();
    cache_.emplace(std::string(bytes), std::move(ids));
  }
}

void BpeModel::merge_word(std::string_view bytes, std::vector<int32_t>& out) const {
  // Symbols form a doubly linked list over positions; a min-heap holds candidate merges
  // ordered by (rank, position) so equal ranks merge left to right. Entries made stale by an
  // earlier merge are recognised by their ids no longer matching and skipped.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  struct Candidate {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Symbol> symbols;
  symbols.reserve(bytes.size());
  for (char c : bytes) {
    const int32_t id = byte_id_[uint8_t(c)];
    if (id < 0) continue;  // a byte the vocabulary lacks is dropped, as HF does without unk
    const int32_t n = int32_t(symbols.size());
    symbols.push_back({id, n - 1, n + 1});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto consider = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[l.next];
    auto it = merges_.find(pair_key(l.id, r.id));
    if (it != merges_.end()) heap.push({it->second.rank, left, l.id, r.id, it->second.id});
  };
  for (int32_t i = 0; i + 1 < int32_t(symbols.size()); ++i) consider(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = symbols[c.pos];
    if (left.id != c.left || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.id != c.right) continue;
    left.id = c.merged;
    right.id = -1;  // dead
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = c.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace kvo
