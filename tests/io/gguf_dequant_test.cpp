// Dequantization of hand-built ggml blocks. Each test encodes known quants following the block
// layout as the ggml spec describes it and computes the expected floats from the formula, so a
// decoder that mixes up nibble order, scale packing or offsets fails.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "io/gguf.h"
#include "io_builders.h"
#include "model/tensor.h"
#include "util/error.h"

namespace kvo {
namespace {

using test::Bytes;

void put_half(Bytes& b, size_t at, float v) {
  uint16_t h = f32_to_f16(v);
  b[at] = uint8_t(h & 0xff);
  b[at + 1] = uint8_t(h >> 8);
}

std::vector<float> run(GgmlType type, const Bytes& block, int64_t n) {
  std::vector<float> out(n, -999.0f);
  dequantize(uint32_t(type), block.data(), out.data(), n);
  return out;
}

TEST(GgufDequant, F32F16BF16) {
  float f32[3] = {1.5f, -2.25f, 0.0f};
  Bytes b(12);
  std::memcpy(b.data(), f32, 12);
  EXPECT_EQ(run(GgmlType::F32, b, 3), std::vector<float>({1.5f, -2.25f, 0.0f}));

  // 0x3C00 = 1.0, 0xC000 = -2.0, 0x3800 = 0.5, 0x0001 = smallest subnormal 2^-24.
  Bytes h = {0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0x01, 0x00};
  EXPECT_EQ(run(GgmlType::F16, h, 4), std::vector<float>({1.0f, -2.0f, 0.5f, 5.9604645e-8f}));

  // bf16 is the top half of an f32: 0x3F80 = 1.0, 0xC040 = -3.0.
  Bytes bf = {0x80, 0x3F, 0x40, 0xC0};
  EXPECT_EQ(run(GgmlType::BF16, bf, 2), std::vector<float>({1.0f, -3.0f}));
}

TEST(GgufDequant, Q8_0) {
  Bytes b(34);  // f16 d, int8 qs[32]
  put_half(b, 0, 0.5f);
  for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(j - 16));
  auto y = run(GgmlType::Q8_0, b, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.5f * (j - 16)) << j;
}

TEST(GgufDequant, Q4_0) {
  Bytes b(18);  // f16 d, qs[16]: element j in the low nibble of qs[j], j+16 in the high one
  put_half(b, 0, 2.0f);
  for (int j = 0; j < 16; ++j) b[2 + j] = uint8_t(j | ((15 - j) << 4));
  auto y = run(GgmlType::Q4_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 2.0f * (j - 8)) << j;
    EXPECT_EQ(y[j + 16], 2.0f * ((15 - j) - 8)) << j;
  }
}

TEST(GgufDequant, Q4_1) {
  Bytes b(40);  // two blocks: f16 d, f16 m, qs[16]
  put_half(b, 0, 0.5f);
  put_half(b, 2, -1.0f);
  for (int j = 0; j < 16; ++j) b[4 + j] = uint8_t(j | ((15 - j) << 4));
  put_half(b, 20, 0.25f);
  put_half(b, 22, 3.0f);
  for (int j = 0; j < 16; ++j) b[24 + j] = 0x5A;  // low nibble 10, high nibble 5
  auto y = run(GgmlType::Q4_1, b, 64);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * j - 1.0f) << j;
    EXPECT_EQ(y[j + 16], 0.5f * (15 - j) - 1.0f) << j;
    EXPECT_EQ(y[32 + j], 0.25f * 10 + 3.0f) << j;
    EXPECT_EQ(y[48 + j], 0.25f * 5 + 3.0f) << j;
  }
}

TEST(GgufDequant, Q4_K) {
  // 8 sub-blocks of 32 with 6-bit scales and mins; the upper four use values >= 16 so the
  // two high bits stored in bytes 0..7 matter.
  const int sc[8] = {1, 2, 3, 4, 17, 33, 50, 63};
  const int mn[8] = {0, 5, 10, 63, 16, 40, 7, 1};
  const float d = 1.0f, dmin = 0.5f;
  Bytes b(144);  // f16 d, f16 dmin, scales[12], qs[128]
  put_half(b, 0, d);
  put_half(b, 2, dmin);
  uint8_t* s = &b[4];
  for (int j = 0; j < 4; ++j) {
    s[j] = uint8_t(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = uint8_t(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = uint8_t((sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4));
  }
  auto q = [](int e) { return (e * 7 + 3) % 16; };
  for (int e = 0; e < 256; ++e) {
    int sub = e / 32, l = e % 32;
    uint8_t& byte = b[16 + (sub / 2) * 32 + l];  // each 32-byte run holds sub-blocks 2k, 2k+1
    byte |= uint8_t(sub % 2 == 0 ? q(e) : q(e) << 4);
  }
  auto y = run(GgmlType::Q4_K, b, 256);
  for (int e = 0; e < 256; ++e) {
    int sub = e / 32;
    EXPECT_FLOAT_EQ(y[e], d * sc[sub] * q(e) - dmin * mn[sub]) << e;
  }
}

TEST(GgufDequant, Q6_K) {
  Bytes b(210);  // ql[128], qh[64], int8 scales[16], f16 d
  const float d = 0.25f;
  put_half(b, 208, d);
  int8_t scales[16];
  for (int i = 0; i < 16; ++i) scales[i] = int8_t(i * 3 - 20);
  std::memcpy(&b[192], scales, 16);
  auto q = [](int e) { return (e * 5 + 3) % 64; };  // 6-bit quants
  auto scale_of = [&](int e) {
    int half = e / 128, k = (e % 128) / 32, l = e % 32;
    return scales[half * 8 + l / 16 + 2 * k];
  };
  for (int e = 0; e < 256; ++e) {
    int half = e / 128, k = (e % 128) / 32, l = e % 32;
    // Low 4 bits: ql[l] (k=0 low, k=2 high nibble) or ql[l+32] (k=1 low, k=3 high nibble).
    uint8_t& lo = b[half * 64 + l + 32 * (k & 1)];
    lo |= uint8_t(k < 2 ? (q(e) & 0x0f) : (q(e) & 0x0f) << 4);
    // High 2 bits: bits 2k..2k+1 of qh[l].
    b[128 + half * 32 + l] |= uint8_t((q(e) >> 4) << (2 * k));
  }
  auto y = run(GgmlType::Q6_K, b, 256);
  for (int e = 0; e < 256; ++e) EXPECT_FLOAT_EQ(y[e], d * scale_of(e) * (q(e) - 32)) << e;
}

TEST(GgufDequant, RowBytesAndNames) {
  EXPECT_EQ(ggml_row_bytes(uint32_t(GgmlType::Q4_K), 512), 288u);
  EXPECT_EQ(ggml_row_bytes(uint32_t(GgmlType::Q6_K), 256), 210u);
  EXPECT_EQ(ggml_row_bytes(uint32_t(GgmlType::Q4_1), 64), 40u);
  EXPECT_EQ(ggml_row_bytes(uint32_t(GgmlType::Q8_0), 32), 34u);
  EXPECT_EQ(ggml_row_bytes(uint32_t(GgmlType::BF16), 3), 6u);
  EXPECT_EQ(ggml_block_size(uint32_t(GgmlType::Q6_K)), 256);
  EXPECT_STREQ(ggml_type_name(12), "Q4_K");
  EXPECT_STREQ(ggml_type_name(99), "type 99");
  EXPECT_THROW(ggml_row_bytes(uint32_t(GgmlType::Q4_0), 33), Error);
  EXPECT_THROW(ggml_block_size(99), Error);
}

TEST(GgufDequant, UnsupportedTypeNamed) {
  Bytes b(176);
  std::vector<float> out(256);
  try {
    dequantize(uint32_t(GgmlType::Q5_K), b.data(), out.data(), 256);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q5_K"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvo

namespace kvo {
namespace {

int hex_digit(char c) {
  return c <= '9' ? c - '0' : c - 'a' + 10;
}

// Random blocks dequantized by gguf-py, an independent implementation
// (tests/io/make_dequant_fixture.py): our output must match bit for bit.
TEST(GgufDequant, MatchesGgufPyReference) {
  std::ifstream in(std::string(KVO_TEST_DATA_DIR) + "/io/data/ggml_dequant_reference.json");
  ASSERT_TRUE(in) << "missing tests/io/data/ggml_dequant_reference.json";
  nlohmann::json j = nlohmann::json::parse(in);
  const std::map<std::string, GgmlType> types = {{"Q4_0", GgmlType::Q4_0},
                                                 {"Q4_1", GgmlType::Q4_1},
                                                 {"Q8_0", GgmlType::Q8_0},
                                                 {"Q4_K", GgmlType::Q4_K},
                                                 {"Q6_K", GgmlType::Q6_K}};
  ASSERT_EQ(j["types"].size(), types.size());
  for (const auto& [name, type] : types) {
    const std::string hex = j["types"][name]["hex"];
    const std::vector<float> expected = j["types"][name]["values"].get<std::vector<float>>();
    Bytes raw(hex.size() / 2);
    for (size_t i = 0; i < raw.size(); ++i)
      raw[i] = uint8_t(hex_digit(hex[2 * i]) * 16 + hex_digit(hex[2 * i + 1]));
    std::vector<float> got = run(type, raw, int64_t(expected.size()));
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], expected[i]) << name << " element " << i;
  }
}

}  // namespace
}  // namespace kvo
