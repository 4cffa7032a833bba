// Loading a Tokenizer from an HF tokenizer.json (+ tokenizer_config.json beside it).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/gguf.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace kvo {
namespace fs = std::filesystem;
namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), "cannot read {}", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json parse_json(const std::string& text, const std::string& where) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", where, e.what());
  }
}

void add_normalizer(std::vector<utf8::Normalization>& out, const nlohmann::json& spec,
                    const std::string& where) {
  if (spec.is_null()) return;
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const auto& n : spec.at("normalizers")) add_normalizer(out, n, where);
  } else if (type == "NFC") {
    out.push_back(utf8::Normalization::NFC);
  } else if (type == "NFD") {
    out.push_back(utf8::Normalization::NFD);
  } else if (type == "NFKC") {
    out.push_back(utf8::Normalization::NFKC);
  } else if (type == "NFKD") {
    out.push_back(utf8::Normalization::NFKD);
  } else {
    fail("{}: normalizer '{}' is not supported (supported: NFC, NFD, NFKC, NFKD)", where, type);
  }
}

bool uses_byte_level(const nlohmann::json& spec) {
  if (spec.is_null()) return false;
  if (spec.value("type", "") == "ByteLevel") return true;
  for (const char* list : {"pretokenizers", "decoders"}) {
    if (spec.contains(list)) {
      for (const auto& s : spec.at(list)) {
        if (uses_byte_level(s)) return true;
      }
    }
  }
  return false;
}

// tokenizer_config.json writes special tokens as a string or as {"content": ...}.
std::string token_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v.at("content").get<std::string>();
  return "";
}

void read_config(Tokenizer::Impl& m, const fs::path& dir) {
  const fs::path config_path = dir / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    const nlohmann::json config = parse_json(read_file(config_path), config_path.string());
    auto lookup = [&](const char* key) -> int32_t {
      if (!config.contains(key)) return -1;
      auto it = m.piece_to_id.find(token_text(config.at(key)));
      return it == m.piece_to_id.end() ? -1 : it->second;
    };
    m.bos = lookup("bos_token");
    m.eos = lookup("eos_token");
    if (config.contains("chat_template")) {
      const auto& t = config.at("chat_template");
      if (t.is_string()) {
        m.chat_template = t.get<std::string>();
      } else if (t.is_array()) {  // named templates: take "default"
        for (const auto& named : t) {
          if (named.value("name", "") == "default") m.chat_template = named.value("template", "");
        }
      }
    }
  }
  // Newer checkpoints keep the template in its own file.
  const fs::path jinja = dir / "chat_template.jinja";
  if (m.chat_template.empty() && fs::exists(jinja)) m.chat_template = read_file(jinja);
}

}  // namespace

Tokenizer Tokenizer::from_json(const std::string& json_text, const std::string& where) {
  const nlohmann::json j = parse_json(json_text, where);
  check(j.is_object() && j.contains("model"), "{}: not a tokenizer.json (no \"model\")", where);
  auto m = std::make_unique<Impl>();
  m->where = where;
  try {
    const auto& model = j.at("model");
    const std::string type = model.value("type", "");
    check(type == "BPE", "{}: tokenizer model '{}' is not supported (only byte-level BPE)", where,
          type);
    const auto nullable_string = [&](const char* key) {
      return model.contains(key) && model.at(key).is_string() ? model.at(key).get<std::string>()
                                                              : std::string();
    };
    check(nullable_string("continuing_subword_prefix").empty() &&
              nullable_string("end_of_word_suffix").empty(),
          "{}: BPE with subword prefixes/suffixes is not supported", where);
    check(!model.value("byte_fallback", false),
          "{}: BPE with byte_fallback (SentencePiece-style) is not supported", where);
    const nlohmann::json pre_spec = j.value("pre_tokenizer", nlohmann::json());
    check(uses_byte_level(pre_spec) || uses_byte_level(j.value("decoder", nlohmann::json())),
          "{}: only byte-level BPE tokenizers are supported (no ByteLevel pre-tokenizer)", where);

    for (const auto& [piece, id] : model.at("vocab").items()) {
      const int64_t i = id.get<int64_t>();
      check(i >= 0 && i < (int64_t(1) << 24), "{}: vocab id {} out of range", where, i);
      if (size_t(i) >= m->pieces.size()) m->pieces.resize(size_t(i) + 1);
      m->pieces[i] = piece;
    }
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(model.at("merges").size());
    for (const auto& merge : model.at("merges")) {
      if (merge.is_string()) {
        const std::string s = merge.get<std::string>();
        const size_t space = s.find(' ');
        check(space != std::string::npos && s.find(' ', space + 1) == std::string::npos,
              "{}: merge '{}' is not two tokens separated by a space", where, s);
        merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else {
        check(merge.is_array() && merge.size() == 2, "{}: merge {} is not a pair", where,
              merge.dump());
        merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      }
    }
    if (j.contains("added_tokens")) {
      for (const auto& a : j.at("added_tokens")) {
        AddedToken t;
        t.content = a.at("content").get<std::string>();
        t.id = a.at("id").get<int32_t>();
        check(t.id >= 0, "{}: added token '{}' has a negative id", where, t.content);
        t.special = a.value("special", false);
        t.lstrip = a.value("lstrip", false);
        t.rstrip = a.value("rstrip", false);
        t.single_word = a.value("single_word", false);
        m->added.add(t);
      }
    }
    add_normalizer(m->normalizers, j.value("normalizer", nlohmann::json()), where);
    m->pre = PreTokenizer::from_json(pre_spec, where);
    m->finish(merges, model.value("ignore_merges", false));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected tokenizer.json layout: {}", where, e.what());
  }
  return Impl::make(std::move(m));
}

Tokenizer Tokenizer::from_json_file(const std::string& path) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "tokenizer.json";
  check(fs::exists(file), "tokenizer file {} does not exist", file.string());
  Tokenizer tok = from_json(read_file(file), file.string());
  try {
    read_config(*tok.impl_, file.parent_path());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected tokenizer_config.json layout: {}", file.parent_path().string(), e.what());
  }
  return tok;
}

Tokenizer Tokenizer::from_path(const std::string& path) {
  check(fs::exists(path), "{} does not exist", path);
  if (!fs::is_directory(path) && fs::path(path).extension() == ".gguf") {
    return from_gguf(GgufFile::open(path));
  }
  return from_json_file(path);
}

}  // namespace kvo
