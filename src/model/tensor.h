// A host tensor: row-major, shape[0] slowest (PyTorch order, not GGUF's ne[] order).
// Weights are used in place from a memory map when their dtype is F32/F16/BF16; quantized GGUF
// blocks are dequantized into owned F32 memory at load.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvo {

// I32: token ids and positions in backend memory (never a weight dtype).
enum class DType { F32, F16, BF16, I32 };

const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);

struct HostTensor {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::shared_ptr<const void> owner;  // keeps the mapping or the owned buffer alive

  bool empty() const { return data == nullptr; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  // Converts element range [offset, offset + n) to fp32.
  void to_f32(float* out, int64_t offset, int64_t n) const;
  std::vector<float> to_f32() const;

  static HostTensor owned_f32(std::vector<int64_t> shape, std::vector<float> values);
};

// IEEE half and bfloat16 conversions used by loaders and backends.
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);  // round to nearest even
uint16_t f32_to_f16(float f);   // round to nearest even

}  // namespace kvo
