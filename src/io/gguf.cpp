// GGUF parsing. The file is untrusted input: every length and count is checked against the bytes
// that remain before anything is allocated, so a corrupted header fails fast with kvo::Error.
#include "io/gguf.h"

#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

#include "util/error.h"

namespace kvo {
namespace {

constexpr uint32_t kMaxDims = 4;
// Arrays of arrays are legal but never deep in practice; the limit bounds the parser's recursion.
constexpr int kMaxNesting = 8;

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

// Smallest encoding of one value of a type; bounds array counts before allocating.
size_t min_value_bytes(uint32_t t) {
  switch (static_cast<ValueType>(t)) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL:
      return 1;
    case ValueType::U16:
    case ValueType::I16:
      return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32:
      return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
      return 8;
    case ValueType::STRING:
      return 8;  // length prefix
    case ValueType::ARRAY:
      return 12;  // element type + count
  }
  return 0;
}

class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& name)
      : data_(data), size_(size), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  void need(size_t n, const char* what) const {
    check(n <= remaining(), "{}: truncated GGUF file: {} needs {} bytes at offset {}, only {} left",
          name_, what, n, pos_, remaining());
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    check(len <= remaining(),
          "{}: corrupted GGUF file: {} has length {} at offset {}, only {} bytes left", name_, what,
          len, pos_ - 8, remaining());
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  GgufValue read_value(uint32_t type, const std::string& key, int depth) {
    GgufValue v;
    switch (static_cast<ValueType>(type)) {
      case ValueType::U8:
        v.value = uint64_t{read<uint8_t>("a uint8 value")};
        break;
      case ValueType::I8:
        v.value = int64_t{read<int8_t>("an int8 value")};
        break;
      case ValueType::U16:
        v.value = uint64_t{read<uint16_t>("a uint16 value")};
        break;
      case ValueType::I16:
        v.value = int64_t{read<int16_t>("an int16 value")};
        break;
      case ValueType::U32:
        v.value = uint64_t{read<uint32_t>("a uint32 value")};
        break;
      case ValueType::I32:
        v.value = int64_t{read<int32_t>("an int32 value")};
        break;
      case ValueType::U64:
        v.value = read<uint64_t>("a uint64 value");
        break;
      case ValueType::I64:
        v.value = read<int64_t>("an int64 value");
        break;
      case ValueType::F32:
        v.value = double{read<float>("a float32 value")};
        break;
      case ValueType::F64:
        v.value = read<double>("a float64 value");
        break;
      case ValueType::BOOL: {
        uint8_t b = read<uint8_t>("a bool value");
        check(b <= 1, "{}: corrupted GGUF file: metadata {} has bool byte {}", name_, key, b);
        v.value = b == 1;
        break;
      }
      case ValueType::STRING:
        v.value = read_string("a string value");
        break;
      case ValueType::ARRAY: {
        check(depth < kMaxNesting,
              "{}: corrupted GGUF file: metadata {} nests arrays deeper than {}", name_, key,
              kMaxNesting);
        uint32_t elem = read<uint32_t>("an array element type");
        size_t min_bytes = min_value_bytes(elem);
        check(min_bytes > 0,
              "{}: corrupted GGUF file: metadata {} has unknown array element type {}", name_, key,
              elem);
        uint64_t n = read<uint64_t>("an array length");
        check(
            n <= remaining() / min_bytes,
            "{}: corrupted GGUF file: metadata {} claims {} array elements, more than the {} bytes "
            "left can hold",
            name_, key, n, remaining());
        GgufArray arr;
        arr.reserve(static_cast<size_t>(n));
        for (uint64_t i = 0; i < n; ++i) arr.push_back(read_value(elem, key, depth + 1));
        v.value = std::move(arr);
        break;
      }
      default:
        fail("{}: corrupted GGUF file: metadata {} has unknown value type {}", name_, key, type);
    }
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& name_;
};

const char* value_kind(const GgufValue& v) {
  switch (v.value.index()) {
    case 0:
      return "an unsigned integer";
    case 1:
      return "a signed integer";
    case 2:
      return "a float";
    case 3:
      return "a bool";
    case 4:
      return "a string";
    default:
      return "an array";
  }
}

bool as_int(const GgufValue& v, int64_t* out) {
  if (auto* u = std::get_if<uint64_t>(&v.value)) {
    if (*u > uint64_t(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(*u);
    return true;
  }
  if (auto* i = std::get_if<int64_t>(&v.value)) {
    *out = *i;
    return true;
  }
  return false;
}

bool as_float(const GgufValue& v, double* out) {
  if (auto* d = std::get_if<double>(&v.value)) {
    *out = *d;
    return true;
  }
  if (auto* u = std::get_if<uint64_t>(&v.value)) {
    *out = static_cast<double>(*u);
    return true;
  }
  if (auto* i = std::get_if<int64_t>(&v.value)) {
    *out = static_cast<double>(*i);
    return true;
  }
  return false;
}

}  // namespace

const char* ggml_type_name(uint32_t type) {
  switch (type) {
    case 0:
      return "F32";
    case 1:
      return "F16";
    case 2:
      return "Q4_0";
    case 3:
      return "Q4_1";
    case 6:
      return "Q5_0";
    case 7:
      return "Q5_1";
    case 8:
      return "Q8_0";
    case 9:
      return "Q8_1";
    case 10:
      return "Q2_K";
    case 11:
      return "Q3_K";
    case 12:
      return "Q4_K";
    case 13:
      return "Q5_K";
    case 14:
      return "Q6_K";
    case 15:
      return "Q8_K";
    case 16:
      return "IQ2_XXS";
    case 17:
      return "IQ2_XS";
    case 18:
      return "IQ3_XXS";
    case 19:
      return "IQ1_S";
    case 20:
      return "IQ4_NL";
    case 21:
      return "IQ3_S";
    case 22:
      return "IQ2_S";
    case 23:
      return "IQ4_XS";
    case 24:
      return "I8";
    case 25:
      return "I16";
    case 26:
      return "I32";
    case 27:
      return "I64";
    case 28:
      return "F64";
    case 29:
      return "IQ1_M";
    case 30:
      return "BF16";
    case 34:
      return "TQ1_0";
    case 35:
      return "TQ2_0";
  }
  // Unknown numbers are rare and only reach error messages; a small ring of buffers keeps the
  // returned pointers valid long enough to format them.
  static thread_local char buf[4][24];
  static thread_local int next = 0;
  char* b = buf[next++ & 3];
  std::snprintf(b, sizeof buf[0], "type %u", type);
  return b;
}

namespace {
struct TypeTraits {
  int block;     // elements per block
  size_t bytes;  // bytes per block
};
// Block layouts as ggml defines them (QK_K = 256 for the K- and I-quants).
bool type_traits(uint32_t type, TypeTraits* t) {
  switch (type) {
    case 0:
      *t = {1, 4};
      return true;  // F32
    case 1:
      *t = {1, 2};
      return true;  // F16
    case 2:
      *t = {32, 18};
      return true;  // Q4_0: d f16, qs[16]
    case 3:
      *t = {32, 20};
      return true;  // Q4_1: d, m f16, qs[16]
    case 6:
      *t = {32, 22};
      return true;  // Q5_0: d, qh[4], qs[16]
    case 7:
      *t = {32, 24};
      return true;  // Q5_1: d, m, qh[4], qs[16]
    case 8:
      *t = {32, 34};
      return true;  // Q8_0: d, qs[32]
    case 9:
      *t = {32, 36};
      return true;  // Q8_1: d, s, qs[32]
    case 10:
      *t = {256, 84};
      return true;  // Q2_K
    case 11:
      *t = {256, 110};
      return true;  // Q3_K
    case 12:
      *t = {256, 144};
      return true;  // Q4_K: d, dmin, scales[12], qs[128]
    case 13:
      *t = {256, 176};
      return true;  // Q5_K
    case 14:
      *t = {256, 210};
      return true;  // Q6_K: ql[128], qh[64], scales[16], d
    case 15:
      *t = {256, 292};
      return true;  // Q8_K: d f32, qs[256], bsums[16] i16
    case 16:
      *t = {256, 66};
      return true;  // IQ2_XXS
    case 17:
      *t = {256, 74};
      return true;  // IQ2_XS
    case 18:
      *t = {256, 98};
      return true;  // IQ3_XXS
    case 19:
      *t = {256, 50};
      return true;  // IQ1_S
    case 20:
      *t = {32, 18};
      return true;  // IQ4_NL
    case 21:
      *t = {256, 110};
      return true;  // IQ3_S
    case 22:
      *t = {256, 82};
      return true;  // IQ2_S
    case 23:
      *t = {256, 136};
      return true;  // IQ4_XS
    case 24:
      *t = {1, 1};
      return true;  // I8
    case 25:
      *t = {1, 2};
      return true;  // I16
    case 26:
      *t = {1, 4};
      return true;  // I32
    case 27:
      *t = {1, 8};
      return true;  // I64
    case 28:
      *t = {1, 8};
      return true;  // F64
    case 29:
      *t = {256, 56};
      return true;  // IQ1_M
    case 30:
      *t = {1, 2};
      return true;  // BF16
    case 34:
      *t = {256, 54};
      return true;  // TQ1_0
    case 35:
      *t = {256, 66};
      return true;  // TQ2_0
  }
  return false;
}
}  // namespace

int ggml_block_size(uint32_t type) {
  TypeTraits t;
  if (!type_traits(type, &t)) fail("unsupported ggml tensor type {}", ggml_type_name(type));
  return t.block;
}

size_t ggml_row_bytes(uint32_t type, int64_t n) {
  TypeTraits t;
  if (!type_traits(type, &t)) fail("unsupported ggml tensor type {}", ggml_type_name(type));
  check(n >= 0 && n % t.block == 0, "{} row of {} elements is not a multiple of the block size {}",
        ggml_type_name(type), n, t.block);
  return static_cast<size_t>(n / t.block) * t.bytes;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

GgufFile GgufFile::open(const std::string& path) {
  return parse(MappedFile::open(path));
}

GgufFile GgufFile::parse(std::shared_ptr<MappedFile> file) {
  GgufFile g = parse_bytes(file->data(), file->size(), file->path());
  g.file_ = std::move(file);
  return g;
}

GgufFile GgufFile::parse_bytes(const uint8_t* data, size_t size, const std::string& name) {
  GgufFile g;
  g.name_ = name;
  Reader r(data, size, g.name_);

  check(size >= 4 && std::memcmp(data, "GGUF", 4) == 0,
        "{}: not a GGUF file (wrong magic: expected \"GGUF\")", name);
  r.read<uint32_t>("the magic");
  g.version_ = r.read<uint32_t>("the version");
  check(g.version_ != 0x02000000u && g.version_ != 0x03000000u,
        "{}: big-endian GGUF files are not supported", name);
  check(g.version_ == 2 || g.version_ == 3, "{}: unsupported GGUF version {} (supported: 2, 3)",
        name, g.version_);
  uint64_t n_tensors = r.read<uint64_t>("the tensor count");
  uint64_t n_kv = r.read<uint64_t>("the metadata count");
  // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at
  // least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
  check(n_kv <= r.remaining() / 13,
        "{}: corrupted GGUF file: {} metadata entries cannot fit in {} bytes", name, n_kv,
        r.remaining());
  check(n_tensors <= r.remaining() / 24,
        "{}: corrupted GGUF file: {} tensors cannot fit in {} bytes", name, n_tensors,
        r.remaining());

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.read_string("a metadata key");
    uint32_t type = r.read<uint32_t>("a metadata value type");
    GgufValue v = r.read_value(type, key, 0);
    check(g.metadata_.emplace(key, std::move(v)).second,
          "{}: corrupted GGUF file: metadata key {} appears twice", name, key);
  }

  uint64_t alignment = 32;
  if (const GgufValue* a = g.find("general.alignment")) {
    const uint64_t* u = std::get_if<uint64_t>(&a->value);
    check(u && *u > 0 && (*u & (*u - 1)) == 0 && *u <= (1u << 20),
          "{}: general.alignment must be a power of two up to 1 MiB", name);
    alignment = *u;
  }

  std::set<std::string> seen;
  g.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = r.read_string("a tensor name");
    uint32_t n_dims = r.read<uint32_t>("a tensor's dimension count");
    check(n_dims >= 1 && n_dims <= kMaxDims, "{}: tensor {} has {} dimensions (supported: 1 to {})",
          name, t.name, n_dims, kMaxDims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = r.read<uint64_t>("a tensor dimension");
      check(ne <= uint64_t(std::numeric_limits<int64_t>::max()) &&
                !__builtin_mul_overflow(numel, int64_t(ne), &numel),
            "{}: tensor {} has an impossible element count", name, t.name);
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    t.type = r.read<uint32_t>("a tensor type");
    t.offset = r.read<uint64_t>("a tensor offset");
    TypeTraits tr;
    check(type_traits(t.type, &tr), "{}: tensor {} has unsupported ggml type {}", name, t.name,
          ggml_type_name(t.type));
    check(t.ne[0] % tr.block == 0,
          "{}: tensor {} ({}) has rows of {} elements, not a multiple of {}", name, t.name,
          ggml_type_name(t.type), t.ne[0], tr.block);
    check(t.offset % alignment == 0, "{}: tensor {} has offset {} not aligned to {}", name, t.name,
          t.offset, alignment);
    // numel fits int64, so numel / block * bytes can only overflow via the multiplication.
    uint64_t nbytes;
    check(!__builtin_mul_overflow(uint64_t(numel / tr.block), uint64_t(tr.bytes), &nbytes) &&
              nbytes <= size,
          "{}: tensor {} is larger than the file", name, t.name);
    t.nbytes = static_cast<size_t>(nbytes);
    check(seen.insert(t.name).second, "{}: tensor {} appears twice", name, t.name);
    g.tensors_.push_back(std::move(t));
  }

  size_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  check(data_start <= size || n_tensors == 0,
        "{}: truncated GGUF file: the data section would start at {} but the file has {} bytes",
        name, data_start, size);
  size_t data_size = data_start <= size ? size - data_start : 0;
  for (GgufTensorInfo& t : g.tensors_) {
    check(t.offset <= data_size && t.nbytes <= data_size - t.offset,
          "{}: truncated GGUF file: tensor {} needs bytes [{}, {}) of a {}-byte data section", name,
          t.name, t.offset, t.offset + t.nbytes, data_size);
    t.data = data + data_start + t.offset;
  }
  return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {
const GgufValue& require(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.find(key);
  if (!v) fail("{}: missing GGUF metadata {}", g.name(), key);
  return *v;
}
const GgufArray& require_array(const GgufFile& g, const std::string& key) {
  const GgufValue& v = require(g, key);
  const GgufArray* a = std::get_if<GgufArray>(&v.value);
  if (!a) fail("{}: GGUF metadata {} is {}, expected an array", g.name(), key, value_kind(v));
  return *a;
}
}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  const std::string* s = std::get_if<std::string>(&v.value);
  if (!s) fail("{}: GGUF metadata {} is {}, expected a string", name_, key, value_kind(v));
  return *s;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  int64_t out;
  if (!as_int(v, &out))
    fail("{}: GGUF metadata {} is {}, expected an integer", name_, key, value_kind(v));
  return out;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  double out;
  if (!as_float(v, &out))
    fail("{}: GGUF metadata {} is {}, expected a number", name_, key, value_kind(v));
  return out;
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  const bool* b = std::get_if<bool>(&v.value);
  if (!b) fail("{}: GGUF metadata {} is {}, expected a bool", name_, key, value_kind(v));
  return *b;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  std::vector<std::string> out;
  for (const GgufValue& e : require_array(*this, key)) {
    const std::string* s = std::get_if<std::string>(&e.value);
    if (!s) fail("{}: GGUF metadata {} holds {}, expected strings", name_, key, value_kind(e));
    out.push_back(*s);
  }
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  std::vector<int64_t> out;
  for (const GgufValue& e : require_array(*this, key)) {
    int64_t x;
    if (!as_int(e, &x))
      fail("{}: GGUF metadata {} holds {}, expected integers", name_, key, value_kind(e));
    out.push_back(x);
  }
  return out;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
  std::vector<double> out;
  for (const GgufValue& e : require_array(*this, key)) {
    double x;
    if (!as_float(e, &x))
      fail("{}: GGUF metadata {} holds {}, expected numbers", name_, key, value_kind(e));
    out.push_back(x);
  }
  return out;
}

const GgufTensorInfo* GgufFile::tensor(const std::string& name) const {
  for (const GgufTensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace kvo
