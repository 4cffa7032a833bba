// Quantizer specs mutated from valid ones (fuzz.h): each parses or raises kvo::Error, and what
// parses has a canonical spec that parses to itself, a positive finite size, and encodes and
// decodes a few vectors to finite values.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "fuzz.h"
#include "quant/spec.h"

namespace kvo::quant {
namespace {

void exercise_spec(const std::string& text) {
  const QuantizerPtr q = parse_quantizer(text);
  const std::string canonical = q->spec();
  ASSERT_EQ(parse_quantizer(canonical)->spec(), canonical) << "from '" << text << "'";
  const double bits = q->bits_per_value(128);
  ASSERT_TRUE(std::isfinite(bits) && bits > 0) << canonical << ": " << bits << " bits a value";
  const size_t n = 4, dim = 128;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * dim), y(n * dim);
  for (float& v : x) v = nd(rng);
  const std::vector<uint8_t> codes = q->encode(x.data(), n, dim);
  ASSERT_EQ(codes.size(), q->encoded_bytes(n, dim)) << canonical;
  q->decode(codes.data(), n, dim, y.data());
  for (float v : y) ASSERT_TRUE(std::isfinite(v)) << canonical << " decodes to " << v;
}

TEST(QuantSpecFuzz, MutationsParseOrRaiseError) {
  const std::vector<std::string> seeds = {
      "higgs:d=4,n=256",
      "higgs:d=2,n=256,group=1024",
      "uniform:bits=2,group=64",
      "fp8",
      "bf16",
      "residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256",
      "residual:res=uniform:bits=1,group=32,meta=(higgs:d=4,n=256,group=64),m=8"};
  // clang-format off
  const std::vector<std::string> tokens = {
      "higgs", "uniform", "fp8", "bf16", "residual", ":", "=", ",", "(", ")", " ", "",
      "d", "n", "group", "bits", "m", "meta", "res",
      "0", "1", "2", "3", "4", "6", "8", "9", "16", "64", "100", "128", "256", "1024", "4096",
      "65536", "-1", "+2", "1e3", "0x10", "4.5", "2147483648", "99999999999999999999",
      "higgs:d=4,n=256", "uniform:bits=2,group=64"};
  // clang-format on
  int accepted = 0, rejected = 0;
  test::fuzz_texts(seeds, tokens, test::fuzz_seed_or(31), exercise_spec, &accepted, &rejected);
  EXPECT_EQ(accepted + rejected, test::fuzz_iterations());
  EXPECT_GT(accepted, test::fuzz_iterations() / 50);  // mutations also yield other valid specs
  EXPECT_GT(rejected, test::fuzz_iterations() / 4);   // and reach the checks
}

}  // namespace
}  // namespace kvo::quant
