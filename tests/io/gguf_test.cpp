// GGUF reader: metadata of every value type, tensor infos and alignment, and clear errors for
// wrong magic, unsupported versions, truncation and impossible counts.
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <string>

#include "io_builders.h"
#include "util/error.h"

namespace kvo {
namespace {

using test::Bytes;
using test::GgufBuilder;

std::string error_of(const Bytes& bytes) {
  try {
    GgufFile::parse_bytes(bytes.data(), bytes.size(), "test.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << haystack

GgufBuilder all_types() {
  Bytes nested;  // array of 2 arrays of int32: [[1, 2], [3]]
  test::put<uint32_t>(nested, test::kArr);
  test::put<uint64_t>(nested, 2);
  test::put<uint32_t>(nested, test::kI32);
  test::put<uint64_t>(nested, 2);
  test::put<int32_t>(nested, 1);
  test::put<int32_t>(nested, 2);
  test::put<uint32_t>(nested, test::kI32);
  test::put<uint64_t>(nested, 1);
  test::put<int32_t>(nested, 3);
  GgufBuilder b;
  b.kv<uint8_t>("u8", test::kU8, 200)
      .kv<int8_t>("i8", test::kI8, -100)
      .kv<uint16_t>("u16", test::kU16, 60000)
      .kv<int16_t>("i16", test::kI16, -30000)
      .kv<uint32_t>("u32", test::kU32, 4000000000u)
      .kv<int32_t>("i32", test::kI32, -2000000000)
      .kv<float>("f32", test::kF32, 0.25f)
      .kv<uint8_t>("bool", test::kBool, 1)
      .kv_str("str", "hello")
      .kv<uint64_t>("u64", test::kU64, 1ull << 40)
      .kv<int64_t>("i64", test::kI64, -(1ll << 40))
      .kv<double>("f64", test::kF64, 1e-300)
      .kv_str_array("strs", {"a", "", "ccc"})
      .kv_i32_array("ints", {5, -6})
      .kv_raw("nested", test::kArr, nested);
  return b;
}

TEST(GgufReader, MetadataOfEveryType) {
  Bytes bytes = all_types().build();
  GgufFile g = GgufFile::parse_bytes(bytes.data(), bytes.size(), "t.gguf");
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.get_int("u8"), 200);
  EXPECT_EQ(g.get_int("i8"), -100);
  EXPECT_EQ(g.get_int("u16"), 60000);
  EXPECT_EQ(g.get_int("i16"), -30000);
  EXPECT_EQ(g.get_int("u32"), 4000000000ll);
  EXPECT_EQ(g.get_int("i32"), -2000000000);
  EXPECT_EQ(g.get_float("f32"), 0.25);
  EXPECT_EQ(g.get_float("u32"), 4e9);  // integers are accepted where a float is asked for
  EXPECT_TRUE(g.get_bool("bool"));
  EXPECT_EQ(g.get_string("str"), "hello");
  EXPECT_EQ(g.get_int("u64"), 1ll << 40);
  EXPECT_EQ(g.get_int("i64"), -(1ll << 40));
  EXPECT_EQ(g.get_float("f64"), 1e-300);
  EXPECT_EQ(g.get_string_array("strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(g.get_int_array("ints"), (std::vector<int64_t>{5, -6}));
  const auto& nested = std::get<GgufArray>(g.find("nested")->value);
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(std::get<GgufArray>(nested[1].value).size(), 1u);
  EXPECT_FALSE(g.has("missing"));
  try {
    g.get_string("u8");
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "u8");
    EXPECT_HAS(e.what(), "expected a string");
  }
  try {
    g.get_int("missing.key");
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "missing GGUF metadata missing.key");
  }
}

TEST(GgufReader, TensorsAndAlignment) {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  Bytes q8(34 * 2, 0);
  for (size_t align : {32, 64}) {
    GgufBuilder b;
    if (align != 32) b.kv<uint32_t>("general.alignment", test::kU32, uint32_t(align));
    b.tensor_f32("a", {3, 2}, a).tensor("q", {64}, uint32_t(GgmlType::Q8_0), q8);
    Bytes bytes = b.build(3, align);
    GgufFile g = GgufFile::parse_bytes(bytes.data(), bytes.size(), "t.gguf");
    ASSERT_EQ(g.tensors().size(), 2u);
    const GgufTensorInfo* t = g.tensor("a");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->ne, (std::vector<int64_t>{3, 2}));
    EXPECT_EQ(t->numel(), 6);
    EXPECT_EQ(t->nbytes, 24u);
    EXPECT_EQ((t->data - bytes.data()) % align, 0u);
    EXPECT_EQ(reinterpret_cast<const float*>(t->data)[5], 6.0f);
    const GgufTensorInfo* q = g.tensor("q");
    EXPECT_EQ(q->nbytes, 68u);
    EXPECT_EQ(q->offset % align, 0u);
    EXPECT_EQ(g.tensor("nope"), nullptr);
  }
}

TEST(GgufReader, Version2Accepted) {
  Bytes bytes = GgufBuilder().kv_str("x", "y").build(2);
  EXPECT_EQ(GgufFile::parse_bytes(bytes.data(), bytes.size(), "t").version(), 2u);
}

TEST(GgufReader, WrongMagic) {
  Bytes bytes = GgufBuilder().build();
  bytes[0] = 'X';
  EXPECT_HAS(error_of(bytes), "not a GGUF file");
  EXPECT_HAS(error_of(Bytes{'G', 'G'}), "not a GGUF file");
  EXPECT_HAS(error_of(Bytes{}), "not a GGUF file");
}

TEST(GgufReader, UnsupportedVersion) {
  EXPECT_HAS(error_of(GgufBuilder().build(1)), "unsupported GGUF version 1");
  EXPECT_HAS(error_of(GgufBuilder().build(4)), "unsupported GGUF version 4");
}

TEST(GgufReader, TruncatedAnywhere) {
  Bytes bytes = all_types().tensor_f32("w", {4, 4}, std::vector<float>(16, 1.0f)).build();
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    Bytes part(bytes.begin(), bytes.begin() + cut);
    EXPECT_NE(error_of(part), "") << "cut at " << cut;
  }
  // A cut inside the tensor data names the tensor.
  Bytes part(bytes.begin(), bytes.end() - 4);
  std::string msg = error_of(part);
  EXPECT_HAS(msg, "truncated GGUF file");
  EXPECT_HAS(msg, "tensor w");
}

TEST(GgufReader, ImpossibleCountsAndShapes) {
  Bytes bytes = GgufBuilder().kv_str("k", "v").build();
  Bytes huge = bytes;
  uint64_t n = ~0ull;
  std::memcpy(&huge[16], &n, 8);  // metadata count
  EXPECT_HAS(error_of(huge), "cannot fit");

  Bytes long_str = bytes;
  std::memcpy(&long_str[24 + 8 + 1 + 4], &n, 8);  // length of the string value
  EXPECT_HAS(error_of(long_str), "has length");

  Bytes dims = GgufBuilder().tensor("t", {1, 1, 1, 1, 1}, 0, Bytes(4)).build();
  EXPECT_HAS(error_of(dims), "5 dimensions");

  Bytes overflow = GgufBuilder().tensor("t", {1ull << 40, 1ull << 40}, 0, Bytes(4)).build();
  EXPECT_HAS(error_of(overflow), "impossible element count");

  Bytes big = GgufBuilder().tensor("t", {1ull << 30}, 0, Bytes(4)).build();
  EXPECT_HAS(error_of(big), "larger than the file");

  Bytes row = GgufBuilder().tensor("t", {33}, uint32_t(GgmlType::Q8_0), Bytes(34)).build();
  EXPECT_HAS(error_of(row), "not a multiple of 32");

  Bytes type = GgufBuilder().tensor("t", {4}, 77, Bytes(16)).build();
  EXPECT_HAS(error_of(type), "unsupported ggml type type 77");

  Bytes dup = GgufBuilder().kv_str("k", "a").kv_str("k", "b").build();
  EXPECT_HAS(error_of(dup), "appears twice");

  Bytes align = GgufBuilder().kv<uint32_t>("general.alignment", test::kU32, 3).build();
  EXPECT_HAS(error_of(align), "general.alignment");
}

TEST(GgufReader, OpenMissingFileNamesPath) {
  try {
    GgufFile::open("/nonexistent/model.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "/nonexistent/model.gguf");
  }
}

}  // namespace
}  // namespace kvo
