// safetensors: header parsing, validation of offsets against shapes and the file, dtype checks
// in host_tensor(), and shard merging through model.safetensors.index.json.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <string>

#include "io_builders.h"
#include "util/error.h"

namespace kvo {
namespace {

using test::Bytes;
using test::SafetensorsBuilder;

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << haystack

std::string error_of(const Bytes& bytes) {
  try {
    SafetensorsArchive::parse_bytes(bytes.data(), bytes.size(), "test.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Bytes bf16_bytes(std::vector<uint16_t> v) {
  Bytes b(v.size() * 2);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

SafetensorsBuilder sample() {
  SafetensorsBuilder b;
  b.add_f32("a", {2, 3}, {1, 2, 3, 4, 5, 6});
  b.add("b", "BF16", {2}, bf16_bytes({0x3F80, 0xC040}));  // 1.0, -3.0
  b.add("ids", "I64", {1}, Bytes(8, 0));
  b.header()["__metadata__"] = {{"format", "pt"}};
  return b;
}

TEST(SafetensorsParse, Header) {
  Bytes bytes = sample().build();
  auto tensors = SafetensorsArchive::parse_bytes(bytes.data(), bytes.size(), "t");
  ASSERT_EQ(tensors.size(), 3u);  // __metadata__ is not a tensor
  const auto& a = tensors.at("a");
  EXPECT_EQ(a.dtype, "F32");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  HostTensor ha = a.host_tensor("a");
  EXPECT_EQ(ha.dtype, DType::F32);
  EXPECT_EQ(ha.to_f32(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  HostTensor hb = tensors.at("b").host_tensor("b");
  EXPECT_EQ(hb.dtype, DType::BF16);
  EXPECT_EQ(hb.to_f32(), (std::vector<float>{1.0f, -3.0f}));
}

TEST(SafetensorsParse, HostTensorRejectsOtherDtypes) {
  Bytes bytes = sample().build();
  auto tensors = SafetensorsArchive::parse_bytes(bytes.data(), bytes.size(), "t");
  try {
    tensors.at("ids").host_tensor("model.ids");
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "model.ids");
    EXPECT_HAS(e.what(), "I64");
  }
}

TEST(SafetensorsParse, MisalignedTensorIsCopied) {
  SafetensorsBuilder b;
  b.add("pad", "U8", {1}, Bytes{7});
  b.add("w", "BF16", {2}, bf16_bytes({0x3F80, 0xC040}));  // starts at an odd offset
  Bytes bytes = b.build();
  auto tensors = SafetensorsArchive::parse_bytes(bytes.data(), bytes.size(), "t");
  HostTensor w = tensors.at("w").host_tensor("w");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.data) % 2, 0u);
  EXPECT_EQ(w.to_f32(), (std::vector<float>{1.0f, -3.0f}));
}

TEST(SafetensorsParse, Truncated) {
  Bytes bytes = sample().build();
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    Bytes part(bytes.begin(), bytes.begin() + cut);
    EXPECT_NE(error_of(part), "") << "cut at " << cut;
  }
  EXPECT_HAS(error_of(Bytes(bytes.begin(), bytes.begin() + 4)), "truncated safetensors file");
  EXPECT_HAS(error_of(Bytes(bytes.begin(), bytes.begin() + 20)), "truncated safetensors file");
  EXPECT_HAS(error_of(Bytes(bytes.begin(), bytes.end() - 1)), "outside");
}

TEST(SafetensorsParse, BadHeaders) {
  Bytes huge(16, 0);
  uint64_t n = 1ull << 40;
  std::memcpy(huge.data(), &n, 8);
  EXPECT_HAS(error_of(huge), "100 MB");

  std::string text = "{not json";
  Bytes notjson;
  test::put<uint64_t>(notjson, text.size());
  notjson.insert(notjson.end(), text.begin(), text.end());
  EXPECT_HAS(error_of(notjson), "not valid JSON");

  SafetensorsBuilder size_mismatch;
  size_mismatch.add("w", "F32", {3}, Bytes(8));
  EXPECT_HAS(error_of(size_mismatch.build()), "need 12");

  SafetensorsBuilder bad_dtype;
  bad_dtype.add("w", "Q4", {3}, Bytes(3));
  EXPECT_HAS(error_of(bad_dtype.build()), "unknown dtype Q4");

  SafetensorsBuilder neg_shape;
  neg_shape.add("w", "F32", {1}, Bytes(4));
  neg_shape.header()["w"]["shape"] = {-1};
  EXPECT_HAS(error_of(neg_shape.build()), "non-negative");

  SafetensorsBuilder reversed;
  reversed.add("w", "F32", {1}, Bytes(4));
  reversed.header()["w"]["data_offsets"] = {4, 0};
  EXPECT_HAS(error_of(reversed.build()), "data_offsets");

  SafetensorsBuilder overflow;
  overflow.add("w", "F32", {1}, Bytes(4));
  overflow.header()["w"]["shape"] = {1ull << 40, 1ull << 40};
  EXPECT_HAS(error_of(overflow.build()), "impossible element count");
}

TEST(SafetensorsArchiveOpen, SingleAndSharded) {
  test::TempDir dir("st");
  SafetensorsBuilder s1, s2;
  s1.add_f32("x", {2}, {1, 2});
  s2.add_f32("y", {1}, {3});
  test::write_file(dir.path() / "model-00001-of-00002.safetensors", s1.build());
  test::write_file(dir.path() / "model-00002-of-00002.safetensors", s2.build());
  test::write_file(dir.path() / "model.safetensors.index.json",
                   std::string(R"({"metadata": {"total_size": 12}, "weight_map": {
                     "x": "model-00001-of-00002.safetensors",
                     "y": "model-00002-of-00002.safetensors"}})"));
  SafetensorsArchive a = SafetensorsArchive::open(dir.path().string());
  ASSERT_EQ(a.tensors().size(), 2u);
  EXPECT_EQ(a.find("y")->host_tensor("y").to_f32(), std::vector<float>{3});
  EXPECT_EQ(a.files().size(), 2u);
  EXPECT_EQ(a.find("z"), nullptr);

  // A single file opened directly.
  SafetensorsArchive single =
      SafetensorsArchive::open((dir.path() / "model-00001-of-00002.safetensors").string());
  EXPECT_EQ(single.tensors().size(), 1u);

  // An index naming a tensor its shard lacks.
  test::write_file(dir.path() / "model.safetensors.index.json",
                   std::string(R"({"weight_map": {"z": "model-00001-of-00002.safetensors"}})"));
  try {
    SafetensorsArchive::open(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "tensor z");
  }
  // An index naming a missing shard.
  test::write_file(dir.path() / "model.safetensors.index.json",
                   std::string(R"({"weight_map": {"x": "gone.safetensors"}})"));
  try {
    SafetensorsArchive::open(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "gone.safetensors");
  }
}

TEST(SafetensorsArchiveOpen, EmptyFolder) {
  test::TempDir dir("st-empty");
  try {
    SafetensorsArchive::open(dir.path().string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "no model.safetensors");
  }
}

}  // namespace
}  // namespace kvo
