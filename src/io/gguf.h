// GGUF v3 reader: header, typed metadata, tensor infos and aligned tensor data (DESIGN.md §2).
// Every offset and count is bounds-checked against the file size; malformed files raise kvo::Error.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "io/mapped_file.h"

namespace kvo {

// ggml tensor types, numbered as in the GGUF spec.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};
const char* ggml_type_name(uint32_t type);  // "Q4_K", or "type 17" for unknown numbers

struct GgufValue;
using GgufArray = std::vector<GgufValue>;
struct GgufValue {
  // Integers of every width are widened to int64/uint64, floats to double.
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // GGUF order: ne[0] is the fastest-varying (row length)
  uint32_t type = 0;        // a GgmlType number
  uint64_t offset = 0;      // from the start of the data section
  size_t nbytes = 0;
  const uint8_t* data = nullptr;
  int64_t numel() const;
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);
  // Parses from memory; `name` is used in error messages (fuzzing and tests use this).
  static GgufFile parse(std::shared_ptr<MappedFile> file);
  static GgufFile parse_bytes(const uint8_t* data, size_t size, const std::string& name);

  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed getters throw kvo::Error naming the key when it is missing or of another type.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // accepts integer values too
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* tensor(const std::string& name) const;  // nullptr if absent
  const std::shared_ptr<MappedFile>& file() const { return file_; }
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::string name_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

// Bytes taken by n elements of a ggml type (n must be a multiple of the block size).
size_t ggml_row_bytes(uint32_t type, int64_t n);
int ggml_block_size(uint32_t type);
// Dequantizes n elements (a multiple of the block size) to fp32. Supported: F32, F16, BF16,
// Q8_0, Q4_0, Q4_1, Q4_K, Q6_K; others raise kvo::Error naming the type.
void dequantize(uint32_t type, const void* src, float* dst, int64_t n);

}  // namespace kvo
