// util/text.h: the string helpers the spec parsers, the harness and the CLI share.
#include "util/text.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace kvo {
namespace {

using Pieces = std::vector<std::string>;

TEST(Text, TrimAndUnwrap) {
  EXPECT_EQ(trim(" \t a b \t"), "a b");
  EXPECT_EQ(trim(" \t "), "");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(unwrap_parens(" ( higgs:d=4 ) "), "higgs:d=4");
  EXPECT_EQ(unwrap_parens("(a)(b)"), "a)(b");  // one enclosing pair, as the spec parsers want
  EXPECT_EQ(unwrap_parens("(a"), "(a");
}

TEST(Text, SplitKeepsEmptyPieces) {
  EXPECT_EQ(split("a,,b", ','), (Pieces{"a", "", "b"}));
  EXPECT_EQ(split("", ','), (Pieces{""}));
  EXPECT_EQ(split("a,", ','), (Pieces{"a", ""}));
  EXPECT_EQ(join(split("x:y:z", ':'), ", "), "x, y, z");
  EXPECT_EQ(join({}, ","), "");
}

TEST(Text, SplitTopLevelSkipsParenthesizedSeparators) {
  EXPECT_EQ(split_top_level("m=4,meta=(higgs:d=4,n=256),res=bf16", ',', "x"),
            (Pieces{"m=4", "meta=(higgs:d=4,n=256)", "res=bf16"}));
  EXPECT_EQ(split_top_level("a,((b,c),d),e", ',', "x"), (Pieces{"a", "((b,c),d)", "e"}));
  try {
    split_top_level("a,(b", ',', "KV spec 'a,(b'");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "unbalanced '(' in KV spec 'a,(b'");
  }
  EXPECT_THROW(split_top_level("a),b", ',', "x"), Error);
}

}  // namespace
}  // namespace kvo
