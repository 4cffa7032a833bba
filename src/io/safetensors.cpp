// safetensors parsing and shard merging. Header values are untrusted: offsets, shapes and sizes
// are validated against each other and the file size before a tensor is exposed.
#include "io/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "util/error.h"

namespace kvo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The format's own reference implementation refuses headers above 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

size_t dtype_bytes(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
      {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

HostTensor SafetensorsTensor::host_tensor(const std::string& name) const {
  HostTensor t;
  if (dtype == "F32") {
    t.dtype = DType::F32;
  } else if (dtype == "F16") {
    t.dtype = DType::F16;
  } else if (dtype == "BF16") {
    t.dtype = DType::BF16;
  } else {
    fail("tensor {} has dtype {}; supported weight dtypes are F32, F16 and BF16", name, dtype);
  }
  t.shape = shape;
  t.data = data;
  t.owner = file;
  if (reinterpret_cast<uintptr_t>(data) % dtype_size(t.dtype) != 0) {
    // The format does not promise aligned offsets; a misaligned tensor is copied once so that
    // every consumer can read it as float/uint16 arrays without undefined behavior.
    auto copy = std::make_shared<std::vector<uint32_t>>((nbytes + 3) / 4);
    std::memcpy(copy->data(), data, nbytes);
    t.data = copy->data();
    t.owner = copy;
  }
  return t;
}

std::map<std::string, SafetensorsTensor> SafetensorsArchive::parse(
    std::shared_ptr<MappedFile> file) {
  auto tensors = parse_bytes(file->data(), file->size(), file->path());
  for (auto& [name, t] : tensors) t.file = file;
  return tensors;
}

std::map<std::string, SafetensorsTensor> SafetensorsArchive::parse_bytes(const uint8_t* data,
                                                                         size_t size,
                                                                         const std::string& name) {
  check(size >= 8, "{}: truncated safetensors file: {} bytes, the header length alone needs 8",
        name, size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  check(header_len <= kMaxHeaderBytes,
        "{}: corrupted safetensors file: header length {} exceeds the 100 MB limit", name,
        header_len);
  check(header_len <= size - 8,
        "{}: truncated safetensors file: header of {} bytes but only {} bytes follow", name,
        header_len, size - 8);
  const char* text = reinterpret_cast<const char*>(data + 8);
  json header;
  try {
    header = json::parse(text, text + header_len);
  } catch (const json::exception& e) {
    fail("{}: corrupted safetensors header (not valid JSON): {}", name, e.what());
  }
  check(header.is_object(), "{}: corrupted safetensors header: expected a JSON object", name);

  const uint8_t* base = data + 8 + header_len;
  const size_t data_size = size - 8 - static_cast<size_t>(header_len);
  std::map<std::string, SafetensorsTensor> out;
  for (auto& [key, entry] : header.items()) {
    if (key == "__metadata__") continue;
    check(entry.is_object(), "{}: tensor {}: header entry is not an object", name, key);
    auto dt = entry.find("dtype");
    check(dt != entry.end() && dt->is_string(), "{}: tensor {}: missing string \"dtype\"", name,
          key);
    SafetensorsTensor t;
    t.dtype = dt->get<std::string>();
    size_t elem = dtype_bytes(t.dtype);
    check(elem > 0, "{}: tensor {}: unknown dtype {}", name, key, t.dtype);

    auto sh = entry.find("shape");
    check(sh != entry.end() && sh->is_array(), "{}: tensor {}: missing array \"shape\"", name, key);
    check(sh->size() <= 8, "{}: tensor {}: {} dimensions is too many", name, key, sh->size());
    uint64_t numel = 1;
    for (const json& d : *sh) {
      check(d.is_number_unsigned(), "{}: tensor {}: shape entries must be non-negative integers",
            name, key);
      uint64_t v = d.get<uint64_t>();
      check(v <= uint64_t(std::numeric_limits<int64_t>::max()) &&
                !__builtin_mul_overflow(numel, v, &numel),
            "{}: tensor {}: impossible element count", name, key);
      t.shape.push_back(static_cast<int64_t>(v));
    }

    auto off = entry.find("data_offsets");
    check(off != entry.end() && off->is_array() && off->size() == 2 &&
              (*off)[0].is_number_unsigned() && (*off)[1].is_number_unsigned(),
          "{}: tensor {}: \"data_offsets\" must be two non-negative integers", name, key);
    uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
    check(begin <= end && end <= data_size,
          "{}: tensor {}: data_offsets [{}, {}) fall outside the {}-byte data section (truncated "
          "file?)",
          name, key, begin, end, data_size);
    uint64_t expected;
    check(!__builtin_mul_overflow(numel, uint64_t(elem), &expected) && expected == end - begin,
          "{}: tensor {}: {} bytes of data but shape and dtype {} need {}", name, key, end - begin,
          t.dtype, numel * elem);
    t.data = base + begin;
    t.nbytes = static_cast<size_t>(end - begin);
    out.emplace(key, std::move(t));
  }
  return out;
}

SafetensorsArchive SafetensorsArchive::open(const std::string& path) {
  SafetensorsArchive archive;
  fs::path p(path);
  if (!fs::is_directory(p)) {
    archive.tensors_ = parse(MappedFile::open(path));
    return archive;
  }
  fs::path index = p / "model.safetensors.index.json";
  if (!fs::exists(index)) {
    fs::path single = p / "model.safetensors";
    check(fs::exists(single),
          "{}: no model.safetensors or model.safetensors.index.json in the folder", path);
    archive.tensors_ = parse(MappedFile::open(single.string()));
    return archive;
  }

  json idx;
  try {
    idx = json::parse(read_text(index));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", index.string(), e.what());
  }
  auto wm = idx.find("weight_map");
  check(idx.is_object() && wm != idx.end() && wm->is_object(), "{}: missing object \"weight_map\"",
        index.string());
  std::map<std::string, std::string> shard_of;
  for (auto& [tensor, shard] : wm->items()) {
    check(shard.is_string(), "{}: weight_map entry {} is not a file name", index.string(), tensor);
    std::string file = shard.get<std::string>();
    // Shards must sit next to the index; a path elsewhere is a malformed (or hostile) index.
    check(!file.empty() && file.find('/') == std::string::npos && file != "..",
          "{}: weight_map entry {} names shard {}, expected a file in the same folder",
          index.string(), tensor, file);
    shard_of[tensor] = file;
  }
  std::set<std::string> shards;
  for (auto& [tensor, file] : shard_of) shards.insert(file);
  std::map<std::string, std::map<std::string, SafetensorsTensor>> parsed;
  for (const std::string& file : shards) {
    fs::path sp = p / file;
    check(fs::exists(sp), "{}: shard {} listed in {} is missing", path, file,
          index.filename().string());
    parsed[file] = parse(MappedFile::open(sp.string()));
  }
  for (auto& [tensor, file] : shard_of) {
    auto& in_shard = parsed[file];
    auto it = in_shard.find(tensor);
    check(it != in_shard.end(), "{}: tensor {} is listed in {} but absent from shard {}", path,
          tensor, index.filename().string(), file);
    archive.tensors_.emplace(tensor, it->second);
  }
  return archive;
}

const SafetensorsTensor* SafetensorsArchive::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::shared_ptr<MappedFile>> SafetensorsArchive::files() const {
  std::vector<std::shared_ptr<MappedFile>> out;
  std::set<const MappedFile*> seen;
  for (auto& [name, t] : tensors_)
    if (t.file && seen.insert(t.file.get()).second) out.push_back(t.file);
  return out;
}

}  // namespace kvo
