// Builders for small GGUF and safetensors files in memory, so tests need no fixtures on disk
// and the fuzz test can start from a known-valid file.
#pragma once
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace kvo::test {

using Bytes = std::vector<uint8_t>;

template <typename T>
void put(Bytes& b, T v) {
  size_t at = b.size();
  b.resize(at + sizeof(T));
  std::memcpy(b.data() + at, &v, sizeof(T));
}
inline void put_str(Bytes& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

// GGUF metadata value type numbers (GGUF spec).
enum GgufVt : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kStr = 8,
  kArr = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

class GgufBuilder {
 public:
  template <typename T>
  GgufBuilder& kv(const std::string& key, uint32_t type, T value) {
    put_str(kv_, key);
    put<uint32_t>(kv_, type);
    put<T>(kv_, value);
    ++n_kv_;
    return *this;
  }
  GgufBuilder& kv_str(const std::string& key, const std::string& value) {
    put_str(kv_, key);
    put<uint32_t>(kv_, kStr);
    put_str(kv_, value);
    ++n_kv_;
    return *this;
  }
  GgufBuilder& kv_str_array(const std::string& key, const std::vector<std::string>& values) {
    put_str(kv_, key);
    put<uint32_t>(kv_, kArr);
    put<uint32_t>(kv_, kStr);
    put<uint64_t>(kv_, values.size());
    for (const auto& v : values) put_str(kv_, v);
    ++n_kv_;
    return *this;
  }
  GgufBuilder& kv_i32_array(const std::string& key, const std::vector<int32_t>& values) {
    put_str(kv_, key);
    put<uint32_t>(kv_, kArr);
    put<uint32_t>(kv_, kI32);
    put<uint64_t>(kv_, values.size());
    for (int32_t v : values) put<int32_t>(kv_, v);
    ++n_kv_;
    return *this;
  }
  // Raw escape hatch for nested arrays and the like: `value` is the encoded value bytes.
  GgufBuilder& kv_raw(const std::string& key, uint32_t type, const Bytes& value) {
    put_str(kv_, key);
    put<uint32_t>(kv_, type);
    kv_.insert(kv_.end(), value.begin(), value.end());
    ++n_kv_;
    return *this;
  }
  // `ne` in GGUF order (ne[0] = row length); `data` already encoded in the ggml type.
  GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                      const Bytes& data) {
    tensors_.push_back({name, std::move(ne), type, data});
    return *this;
  }
  GgufBuilder& tensor_f32(const std::string& name, std::vector<uint64_t> ne,
                          const std::vector<float>& values) {
    Bytes data(values.size() * 4);
    std::memcpy(data.data(), values.data(), data.size());
    return tensor(name, std::move(ne), 0, data);
  }

  Bytes build(uint32_t version = 3, size_t alignment = 32) const {
    Bytes b = {'G', 'G', 'U', 'F'};
    put<uint32_t>(b, version);
    put<uint64_t>(b, tensors_.size());
    put<uint64_t>(b, n_kv_);
    b.insert(b.end(), kv_.begin(), kv_.end());
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors_) {
      put_str(b, t.name);
      put<uint32_t>(b, uint32_t(t.ne.size()));
      for (uint64_t d : t.ne) put<uint64_t>(b, d);
      put<uint32_t>(b, t.type);
      put<uint64_t>(b, offset);
      offsets.push_back(offset);
      offset = (offset + t.data.size() + alignment - 1) / alignment * alignment;
    }
    b.resize((b.size() + alignment - 1) / alignment * alignment, 0);
    size_t start = b.size();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      b.resize(start + offsets[i], 0);
      b.insert(b.end(), tensors_[i].data.begin(), tensors_[i].data.end());
    }
    return b;
  }

 private:
  struct T {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    Bytes data;
  };
  Bytes kv_;
  uint64_t n_kv_ = 0;
  std::vector<T> tensors_;
};

class SafetensorsBuilder {
 public:
  SafetensorsBuilder& add(const std::string& name, const std::string& dtype,
                          std::vector<int64_t> shape, const Bytes& data) {
    header_[name] = {{"dtype", dtype},
                     {"shape", shape},
                     {"data_offsets", {data_.size(), data_.size() + data.size()}}};
    data_.insert(data_.end(), data.begin(), data.end());
    return *this;
  }
  SafetensorsBuilder& add_f32(const std::string& name, std::vector<int64_t> shape,
                              const std::vector<float>& values) {
    Bytes d(values.size() * 4);
    std::memcpy(d.data(), values.data(), d.size());
    return add(name, "F32", std::move(shape), d);
  }
  nlohmann::json& header() { return header_; }

  Bytes build() const {
    std::string h = header_.dump();
    h.resize((h.size() + 7) / 8 * 8, ' ');  // writers pad the header to 8 bytes with spaces
    Bytes b(8 + h.size() + data_.size());
    uint64_t n = h.size();
    std::memcpy(b.data(), &n, 8);
    std::memcpy(b.data() + 8, h.data(), h.size());
    if (!data_.empty()) std::memcpy(b.data() + 8 + h.size(), data_.data(), data_.size());
    return b;
  }

 private:
  nlohmann::json header_ = nlohmann::json::object();
  Bytes data_;
};

inline void write_file(const std::filesystem::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}
inline void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A fresh, empty folder under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("kvo-" + tag + "-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace kvo::test
