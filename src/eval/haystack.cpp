#include "eval/haystack.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "util/error.h"

namespace kvo {
namespace fs = std::filesystem;
namespace {

constexpr const char* kEssays = "shared/data/haystack/paul-graham-essays";
constexpr size_t kMaxParagraphSentences = 9;

bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

std::string strip_header(std::string text) {
  // Some files open with a Y Combinator advertisement, then "Month YYYY" glued to the text.
  static const char* kMonths[] = {"January",   "February", "March",    "April",
                                  "May",       "June",     "July",     "August",
                                  "September", "October",  "November", "December"};
  const size_t ad = text.find("Y Combinator.");
  if (ad != std::string::npos && ad < 200) text.erase(0, ad + 13);
  size_t start = text.find_first_not_of(" \n\r\t");
  if (start == std::string::npos) return "";
  text.erase(0, start);
  for (const char* month : kMonths) {
    const size_t n = std::char_traits<char>::length(month);
    if (text.compare(0, n, month) == 0 && text.size() > n + 5 && text[n] == ' ' &&
        std::isdigit(static_cast<unsigned char>(text[n + 1]))) {
      text.erase(0, n + 5);
      break;
    }
  }
  return text;
}

}  // namespace

std::vector<HaystackSentence> split_essay(const std::string& raw) {
  std::string text = strip_header(raw);
  // The notes section and the thanks line are references, not prose.
  for (const char* tail : {"Notes[", "Notes\n", "Thanks to "}) {
    const size_t at = text.find(tail);
    if (at != std::string::npos && at > text.size() / 3) text.erase(at);
  }
  // Paragraph breaks in these files are a footnote marker before a newline, or a sentence end
  // glued to the next sentence ("slowly.Then"); plain newlines are line wrapping.
  std::string flat;
  std::vector<size_t> breaks;  // offsets in `flat` where a paragraph starts
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '[') {
      size_t j = i + 1;
      while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
      if (j > i + 1 && j < text.size() && text[j] == ']') {
        if (j + 1 < text.size() && text[j + 1] == '\n') breaks.push_back(flat.size());
        i = j;
        continue;
      }
    }
    if (is_space(c)) {
      if (!flat.empty() && flat.back() != ' ') flat += ' ';
      continue;
    }
    // A quote or parenthesis closes a sentence only after terminal punctuation; a quote
    // glued to a capital after a space is an opening quote ("the term "Web 2.0"").
    auto terminal = [](char ch) { return ch == '.' || ch == '?' || ch == '!'; };
    const size_t len = flat.size();
    const bool sentence_end =
        len > 0 &&
        (terminal(flat[len - 1]) || (len > 1 && (flat[len - 1] == '"' || flat[len - 1] == ')') &&
                                     (terminal(flat[len - 2]) || flat[len - 2] == ',')));
    if (sentence_end && is_upper(c)) {
      breaks.push_back(flat.size());
      flat += ' ';
    }
    flat += c;
  }
  std::vector<HaystackSentence> out;
  size_t next_break = 0;
  std::string current;
  bool current_starts = true;
  auto emit = [&]() {
    size_t b = current.find_first_not_of(' ');
    size_t e = current.find_last_not_of(' ');
    if (b != std::string::npos) out.push_back({current.substr(b, e - b + 1), current_starts});
    current.clear();
    current_starts = false;
  };
  for (size_t i = 0; i < flat.size(); ++i) {
    while (next_break < breaks.size() && breaks[next_break] < i) ++next_break;
    if (next_break < breaks.size() && breaks[next_break] == i) {
      emit();
      current_starts = true;
    }
    current += flat[i];
    // Sentence end: terminal punctuation followed by a space and a capital letter.
    const char c = flat[i];
    if ((c == '.' || c == '?' || c == '!') && i + 2 < flat.size() && flat[i + 1] == ' ' &&
        (is_upper(flat[i + 2]) || flat[i + 2] == '"')) {
      const bool next_is_break = next_break < breaks.size() && breaks[next_break] == i + 1;
      if (!next_is_break) emit();
    }
  }
  emit();
  return out;
}

std::vector<std::string> Haystack::paragraphs(size_t start, size_t count) const {
  std::vector<std::string> out;
  if (sentences.empty()) return out;
  size_t in_paragraph = 0;
  for (size_t i = 0; i < count; ++i) {
    const HaystackSentence& s = sentences[(start + i) % sentences.size()];
    if (out.empty() || (s.starts_paragraph && in_paragraph > 0) ||
        in_paragraph >= kMaxParagraphSentences) {
      out.emplace_back();
      in_paragraph = 0;
    } else {
      out.back() += ' ';
    }
    out.back() += s.text;
    in_paragraph++;
  }
  return out;
}

std::string find_haystack_dir(const std::string& override_dir) {
  if (!override_dir.empty()) {
    check(fs::is_directory(override_dir), "--haystack {}: not a directory", override_dir);
    return override_dir;
  }
  std::vector<fs::path> candidates;
#ifdef KVO_SOURCE_DIR
  candidates.push_back(fs::path(KVO_SOURCE_DIR) / ".." / kEssays);
#endif
  // The binary lives in <checkout>/<build dir>/; ../shared sits beside the checkout.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path dir = exe.parent_path(); dir.has_relative_path(); dir = dir.parent_path()) {
      candidates.push_back(dir / ".." / kEssays);
    }
  }
  candidates.push_back(fs::path("..") / kEssays);
  for (const fs::path& p : candidates) {
    if (fs::is_directory(p, ec)) return fs::weakly_canonical(p, ec).string();
  }
  fail("cannot find the haystack essays (../{} beside the checkout); pass --haystack DIR", kEssays);
}

const Haystack& load_haystack(const std::string& dir) {
  static std::mutex mutex;
  static std::map<std::string, Haystack> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(dir);
  if (it != cache.end()) return it->second;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".txt") files.push_back(entry);
  }
  std::sort(files.begin(), files.end());
  check(!files.empty(), "haystack folder {} has no .txt files", dir);
  Haystack h;
  for (const fs::path& f : files) {
    std::ifstream in(f, std::ios::binary);
    check(bool(in), "cannot read {}", f.string());
    std::stringstream ss;
    ss << in.rdbuf();
    std::vector<HaystackSentence> s = split_essay(ss.str());
    if (!s.empty()) s.front().starts_paragraph = true;
    h.sentences.insert(h.sentences.end(), s.begin(), s.end());
  }
  check(!h.sentences.empty(), "haystack folder {} has no usable text", dir);
  return cache.emplace(dir, std::move(h)).first->second;
}

}  // namespace kvo
