// Randomized-mutation fuzzing of the GGUF and safetensors parsers (fuzz.h): starting from small
// valid files, apply bit flips, truncations and planted u64 lengths, and require that every
// input either parses or raises kvo::Error. Fixed seeds keep CI reproducible.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "fuzz.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io_builders.h"
#include "model/tensor.h"
#include "model/weights.h"
#include "util/error.h"

namespace kvo {
namespace {

using test::Bytes;

Bytes mutate(const Bytes& in, std::mt19937_64& rng) {
  Bytes b = in;
  auto pick = [&](uint64_t n) { return n == 0 ? 0 : rng() % n; };
  switch (rng() % 5) {
    case 0: {  // a few bit flips
      int flips = 1 + int(pick(8));
      for (int i = 0; i < flips && !b.empty(); ++i) b[pick(b.size())] ^= uint8_t(1u << pick(8));
      break;
    }
    case 1:  // truncation
      b.resize(pick(b.size()));
      break;
    case 2: {  // a planted u64 (lengths, counts, offsets) at any position
      static const uint64_t interesting[] = {0,          1,          7,     8,          31,
                                             32,         255,        4096,  1ull << 31, 1ull << 32,
                                             1ull << 62, 1ull << 63, ~0ull, ~0ull - 7};
      uint64_t v = rng() % 2 ? interesting[pick(std::size(interesting))] : rng();
      if (b.size() >= 8) std::memcpy(&b[pick(b.size() - 7)], &v, 8);
      break;
    }
    case 3: {  // a small value near the original, as in length off-by-some errors
      if (b.size() >= 8) {
        size_t at = pick(b.size() - 7);
        uint64_t v;
        std::memcpy(&v, &b[at], 8);
        v += int64_t(pick(64)) - 32;
        std::memcpy(&b[at], &v, 8);
      }
      break;
    }
    default: {  // random bytes inserted or erased
      size_t at = pick(b.size() + 1);
      if (rng() % 2 && at < b.size()) {
        b.erase(b.begin() + at, b.begin() + std::min(b.size(), at + 1 + size_t(pick(16))));
      } else {
        for (int i = 0, n = 1 + int(pick(16)); i < n; ++i) b.insert(b.begin() + at, uint8_t(rng()));
      }
      break;
    }
  }
  return b;
}

Bytes valid_gguf() {
  test::GgufBuilder b;
  Bytes q8(34, 0);
  q8[1] = 0x38;  // d = 0.5
  for (int j = 0; j < 32; ++j) q8[2 + j] = uint8_t(j);
  Bytes q4k(144, 0x11), q6k(210, 0x22);
  b.kv_str("general.architecture", "llama")
      .kv<uint32_t>("llama.block_count", test::kU32, 1)
      .kv<uint32_t>("llama.context_length", test::kU32, 64)
      .kv<uint32_t>("llama.embedding_length", test::kU32, 32)
      .kv<uint32_t>("llama.feed_forward_length", test::kU32, 64)
      .kv<uint32_t>("llama.attention.head_count", test::kU32, 4)
      .kv<float>("llama.rope.freq_base", test::kF32, 10000.0f)
      .kv_str_array("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "bb"})
      .kv_i32_array("tokenizer.ggml.token_type", {3, 3, 1, 1})
      .kv<uint8_t>("flag", test::kBool, 1)
      .kv<double>("f64", test::kF64, 2.5)
      .tensor_f32("output_norm.weight", {32}, std::vector<float>(32, 1.0f))
      .tensor("q8", {32}, uint32_t(GgmlType::Q8_0), q8)
      .tensor("q4k", {256}, uint32_t(GgmlType::Q4_K), q4k)
      .tensor("q6k", {256}, uint32_t(GgmlType::Q6_K), q6k)
      .tensor("f16", {4, 2}, uint32_t(GgmlType::F16), Bytes(16, 0x3c));
  return b.build();
}

Bytes valid_safetensors() {
  test::SafetensorsBuilder b;
  b.add_f32("model.norm.weight", {4}, {1, 2, 3, 4});
  b.add("model.embed_tokens.weight", "BF16", {2, 3}, Bytes(12, 0x3f));
  b.add("ids", "I64", {2}, Bytes(16, 1));
  b.header()["__metadata__"] = {{"format", "pt"}};
  return b.build();
}

// Touches everything a loader would: metadata, tensor bytes and dequantized values.
void exercise_gguf(const Bytes& bytes) {
  GgufFile g = GgufFile::parse_bytes(bytes.data(), bytes.size(), "fuzz.gguf");
  for (const GgufTensorInfo& t : g.tensors()) {
    if (t.numel() > (1 << 20)) continue;
    std::vector<float> out(static_cast<size_t>(t.numel()));
    try {
      dequantize(t.type, t.data, out.data(), t.numel());
    } catch (const Error&) {
      // unsupported type for dequantization: fine
    }
  }
  gguf_model_config(g);
}

void exercise_safetensors(const Bytes& bytes) {
  auto tensors = SafetensorsArchive::parse_bytes(bytes.data(), bytes.size(), "fuzz.safetensors");
  for (const auto& [name, t] : tensors) {
    if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16") continue;
    HostTensor h = t.host_tensor(name);
    volatile float sink = 0;
    for (float x : h.to_f32()) sink = sink + x;
  }
}

TEST(GgufFuzz, MutationsParseOrRaiseError) {
  Bytes valid = valid_gguf();
  ASSERT_NO_THROW(GgufFile::parse_bytes(valid.data(), valid.size(), "valid"));
  int parsed = 0, rejected = 0;
  test::fuzz_inputs(std::vector<Bytes>{valid}, test::fuzz_seed_or(20240611), mutate, exercise_gguf,
                    &parsed, &rejected);
  EXPECT_EQ(parsed + rejected, test::fuzz_iterations());
  EXPECT_GT(rejected, test::fuzz_iterations() / 4);  // the mutations do reach the checks
}

TEST(SafetensorsFuzz, MutationsParseOrRaiseError) {
  Bytes valid = valid_safetensors();
  ASSERT_NO_THROW(SafetensorsArchive::parse_bytes(valid.data(), valid.size(), "valid"));
  int parsed = 0, rejected = 0;
  test::fuzz_inputs(std::vector<Bytes>{valid}, test::fuzz_seed_or(977), mutate,
                    exercise_safetensors, &parsed, &rejected);
  EXPECT_EQ(parsed + rejected, test::fuzz_iterations());
  EXPECT_GT(rejected, test::fuzz_iterations() / 4);
}

}  // namespace
}  // namespace kvo
