#include "quant/spec.h"

#include <gtest/gtest.h>

#include "quant/higgs.h"
#include "quant/residual.h"
#include "quant/uniform.h"
#include "util/error.h"

namespace kvo::quant {
namespace {

TEST(QuantSpec, ParsesEveryFamily) {
  EXPECT_EQ(parse_quantizer("higgs:d=4,n=256")->spec(), "higgs:d=4,n=256,group=128");
  EXPECT_EQ(parse_quantizer("higgs:d=2,n=256,group=1024")->spec(), "higgs:d=2,n=256,group=1024");
  EXPECT_EQ(parse_quantizer("uniform:bits=2,group=64")->spec(), "uniform:bits=2,group=64");
  EXPECT_EQ(parse_quantizer("uniform:bits=4")->spec(), "uniform:bits=4,group=64");
  EXPECT_EQ(parse_quantizer("fp8")->spec(), "fp8");
  EXPECT_EQ(parse_quantizer(" bf16 ")->spec(), "bf16");
}

TEST(QuantSpec, ResidualWithNestedCommas) {
  auto q = parse_quantizer("residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256");
  auto* r = dynamic_cast<ResidualQuantizer*>(q.get());
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->m(), 4);
  EXPECT_EQ(r->meta().spec(), "higgs:d=4,n=256,group=128");
  EXPECT_EQ(r->res().spec(), "higgs:d=8,n=256,group=128");
  // Keys in any order, nested groups, parentheses, and the canonical form round-trips.
  auto q2 =
      parse_quantizer("residual:res=uniform:bits=1,group=32,meta=(higgs:d=4,n=256,group=64),m=8");
  EXPECT_EQ(q2->spec(), "residual:m=8,meta=higgs:d=4,n=256,group=64,res=uniform:bits=1,group=32");
  EXPECT_EQ(parse_quantizer(q2->spec())->spec(), q2->spec());
  EXPECT_NEAR(q->bits_per_value(128), 2.25 / 4 + 1.25, 1e-3);
}

void expect_error(const std::string& spec, const std::string& needle) {
  try {
    parse_quantizer(spec);
    FAIL() << "no error for '" << spec << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "spec '" << spec << "' gave: " << e.what();
  }
}

TEST(QuantSpec, ErrorsNameTheProblem) {
  expect_error("", "empty");
  expect_error("int4", "unknown quantizer 'int4'");
  expect_error("higgs:d=4,n=256,grop=64", "unknown key 'grop'");
  expect_error("higgs:d=4", "missing key 'n'");
  expect_error("higgs:d=four,n=256", "bad value 'four' for key 'd'");
  expect_error("higgs:d=4,n=256,d=2", "key 'd' given twice");
  expect_error("higgs:d=4,n=256,group=100", "group=100");
  expect_error("higgs:d=3,n=256", "EDEN3-256");
  expect_error("uniform:bits=9", "bits=9");
  expect_error("uniform:group=64", "missing key 'bits'");
  expect_error("fp8:scale=1", "unknown key 'scale' for fp8");
  expect_error("higgs:", "no parameters");
  expect_error("higgs:d=4,n=256,", "expected key=value");
  expect_error("residual:m=4,meta=higgs:d=4,n=256", "missing key 'res'");
  expect_error("residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256,bits=2",
               "unknown key 'bits'");
  expect_error("residual:m=x,meta=bf16,res=bf16", "bad value 'x' for key 'm'");
  expect_error("residual:m=4,meta=(higgs:d=4,n=256,res=bf16", "unbalanced");
}

}  // namespace
}  // namespace kvo::quant
