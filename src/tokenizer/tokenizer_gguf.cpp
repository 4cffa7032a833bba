// Loading a Tokenizer from GGUF metadata (tokenizer.ggml.*), following llama.cpp's meaning of
// the keys and matching what HF tokenizers does with the original tokenizer.json.
#include "io/gguf.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace kvo {
namespace {

// llama.cpp's token types.
constexpr int64_t kControl = 3;
constexpr int64_t kUserDefined = 4;

}  // namespace

Tokenizer Tokenizer::from_gguf(const GgufFile& gguf) {
  const std::string& where = gguf.name();
  check(gguf.has("tokenizer.ggml.model"),
        "{}: no tokenizer in the GGUF metadata "
        "(tokenizer.ggml.model is missing)",
        where);
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  check(model == "gpt2",
        "{}: tokenizer model '{}' is not supported (only byte-level BPE, tokenizer.ggml.model "
        "'gpt2')",
        where, model);
  auto m = std::make_unique<Impl>();
  m->where = where;
  m->pieces = gguf.get_string_array("tokenizer.ggml.tokens");
  check(!m->pieces.empty(), "{}: tokenizer.ggml.tokens is empty", where);

  std::vector<int64_t> types;
  if (gguf.has("tokenizer.ggml.token_type")) {
    types = gguf.get_int_array("tokenizer.ggml.token_type");
    check(types.size() == m->pieces.size(),
          "{}: tokenizer.ggml.token_type has {} entries for {} tokens", where, types.size(),
          m->pieces.size());
  }
  for (size_t id = 0; id < types.size(); ++id) {
    if (types[id] != kControl && types[id] != kUserDefined) continue;
    AddedToken t;
    t.content = m->pieces[id];
    t.id = int32_t(id);
    t.special = types[id] == kControl;
    m->added.add(t);
  }

  std::vector<std::pair<std::string, std::string>> merges;
  if (gguf.has("tokenizer.ggml.merges")) {
    for (const std::string& s : gguf.get_string_array("tokenizer.ggml.merges")) {
      const size_t space = s.find(' ', 1);  // a merge's left part never starts with a space
      check(space != std::string::npos, "{}: merge '{}' is not two tokens separated by a space",
            where, s);
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    }
  }

  const std::string pre =
      gguf.has("tokenizer.ggml.pre") ? gguf.get_string("tokenizer.ggml.pre") : "default";
  m->pre = PreTokenizer::from_gguf_pre(pre, where);
  // Qwen's tokenizer.json normalizes to NFC first (llama.cpp skips it; HF is our reference).
  if (pre == "qwen2") m->normalizers.push_back(utf8::Normalization::NFC);
  // llama.cpp sets ignore_merges for the Llama 3 vocabulary, as its tokenizer.json does.
  const bool ignore_merges = pre == "llama-bpe" || pre == "llama3";
  m->finish(merges, ignore_merges);

  auto id_key = [&](const char* key) -> int32_t {
    if (!gguf.has(key)) return -1;
    const int64_t id = gguf.get_int(key);
    return id >= 0 && id < int64_t(m->pieces.size()) ? int32_t(id) : -1;
  };
  m->bos = id_key("tokenizer.ggml.bos_token_id");
  m->eos = id_key("tokenizer.ggml.eos_token_id");
  if (gguf.has("tokenizer.chat_template"))
    m->chat_template = gguf.get_string("tokenizer.chat_template");
  return Impl::make(std::move(m));
}

}  // namespace kvo
