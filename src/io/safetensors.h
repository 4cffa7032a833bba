// safetensors reader: u64 LE header length, JSON header {name: {dtype, shape, data_offsets}},
// raw little-endian bytes. Shards are merged through model.safetensors.index.json.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/mapped_file.h"
#include "model/tensor.h"

namespace kvo {

struct SafetensorsTensor {
  std::string dtype;           // as written: "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;  // row-major, shape[0] slowest
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<MappedFile> file;
  // Wraps as a HostTensor; raises kvo::Error for dtypes other than F32/F16/BF16.
  HostTensor host_tensor(const std::string& name) const;
};

class SafetensorsArchive {
 public:
  // `path` is a .safetensors file or a folder with model.safetensors or
  // model.safetensors.index.json.
  static SafetensorsArchive open(const std::string& path);
  // Parses one file's bytes (tests and fuzzing); `name` is used in error messages.
  static std::map<std::string, SafetensorsTensor> parse(std::shared_ptr<MappedFile> file);
  static std::map<std::string, SafetensorsTensor> parse_bytes(const uint8_t* data, size_t size,
                                                              const std::string& name);

  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;
  std::vector<std::shared_ptr<MappedFile>> files() const;

 private:
  std::map<std::string, SafetensorsTensor> tensors_;
};

}  // namespace kvo
