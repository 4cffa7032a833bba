// The generator's promises: determinism, record and attribute counts, every gold value stated
// verbatim, prompt length within 5% of the target, gold answer under 1024 tokens.
#include "eval/text2json_generate.h"

#include <gtest/gtest.h>

#include <set>

#include "eval/text2json_domains.h"
#include "eval/text2json_score.h"
#include "eval_test_support.h"
#include "util/error.h"

namespace kvo {
namespace {

using testing::llama_counter;

Text2JsonOptions options(const std::string& domains, int64_t tokens, int lo, int hi, size_t samples,
                         uint64_t seed = 7) {
  Text2JsonOptions o;
  size_t start = 0;
  for (size_t comma; (comma = domains.find(',', start)) != std::string::npos; start = comma + 1) {
    o.domains.push_back(domains.substr(start, comma - start));
  }
  o.domains.push_back(domains.substr(start));
  o.target_tokens = tokens;
  o.records_min = lo;
  o.records_max = hi;
  o.samples = samples;
  o.seed = seed;
  o.haystack_dir = testing::test_haystack_dir();
  return o;
}

std::string dump_all(const std::vector<nlohmann::ordered_json>& rows) {
  std::string s;
  for (const auto& r : rows) s += r.dump() + "\n";
  return s;
}

TEST(Text2JsonGenerate, SameSeedSameBytes) {
  const Text2JsonOptions o = options("products,medical,organizations,movies", 4096, 6, 10, 4);
  const std::string a = dump_all(generate_text2json(o, llama_counter()));
  const std::string b = dump_all(generate_text2json(o, llama_counter()));
  EXPECT_EQ(a, b);
  Text2JsonOptions other = o;
  other.seed = 8;
  EXPECT_NE(a, dump_all(generate_text2json(other, llama_counter())));
  // Sample i does not depend on how many samples are generated.
  Text2JsonOptions fewer = o;
  fewer.samples = 2;
  EXPECT_EQ(generate_text2json(fewer, llama_counter())[1].dump(),
            generate_text2json(o, llama_counter())[1].dump());
}

TEST(Text2JsonGenerate, RecordAndAttributeCounts) {
  const Text2JsonOptions o = options("products,medical,organizations,movies", 4096, 5, 9, 8);
  const auto rows = generate_text2json(o, llama_counter());
  ASSERT_EQ(rows.size(), 8u);
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    SCOPED_TRACE(row["id"].get<std::string>());
    EXPECT_EQ(row["domain"], o.domains[i % 4]);
    const DomainSpec& d = text2json_domain(row["domain"]);
    const auto attrs = row["attributes"].get<std::vector<std::string>>();
    ASSERT_EQ(attrs.size(), 2u);
    EXPECT_NE(attrs[0], attrs[1]);
    for (const std::string& a : attrs) {
      bool known = false;
      for (const AttributeSpec& spec : d.attributes) known |= spec.key == a;
      EXPECT_TRUE(known) << a;
    }
    const nlohmann::json gold = nlohmann::json::parse(row["answer"].get<std::string>());
    ASSERT_TRUE(gold.is_array());
    EXPECT_EQ(gold.size(), row["records"].get<size_t>());
    EXPECT_GE(gold.size(), 5u);
    EXPECT_LE(gold.size(), 9u);
    std::set<std::string> names;
    for (const auto& rec : gold) {
      ASSERT_EQ(rec.size(), 3u);
      ASSERT_TRUE(rec.contains("name"));
      for (const std::string& a : attrs) ASSERT_TRUE(rec.contains(a));
      for (const auto& [k, v] : rec.items()) EXPECT_TRUE(v.is_string()) << k;
      names.insert(rec["name"].get<std::string>());
    }
    EXPECT_EQ(names.size(), gold.size()) << "duplicate names would exclude the sample";
    // The gold answer scores 100 against itself.
    const SampleScore s =
        score_text2json(row["answer"].get<std::string>(), row["answer"].get<std::string>());
    EXPECT_FALSE(s.excluded);
    EXPECT_DOUBLE_EQ(s.score, 1.0);
  }
}

TEST(Text2JsonGenerate, EveryGoldValueAppearsInItsDocument) {
  const auto rows = generate_text2json(
      options("products,medical,organizations,movies", 8192, 10, 16, 8, 3), llama_counter());
  for (const auto& row : rows) {
    const std::string& problem = row["problem"].get_ref<const std::string&>();
    for (const auto& rec : nlohmann::json::parse(row["answer"].get<std::string>())) {
      for (const auto& [key, value] : rec.items()) {
        EXPECT_NE(problem.find(value.get<std::string>()), std::string::npos)
            << row["id"] << " " << key << " " << value;
      }
    }
  }
}

TEST(Text2JsonGenerate, PromptLengthWithinFivePercent) {
  for (int64_t tokens : {2048, 4096, 16384, 32768}) {
    const auto rows = generate_text2json(
        options("movies,medical", tokens, tokens >= 16384 ? 16 : 4, tokens >= 16384 ? 24 : 8, 2),
        llama_counter());
    for (const auto& row : rows) {
      const int64_t measured = llama_counter()(row["problem"].get<std::string>());
      EXPECT_EQ(measured, row["prompt_tokens"].get<int64_t>());
      EXPECT_LE(std::llabs(measured - tokens), tokens / 20) << row["id"];
      EXPECT_EQ(row["target_tokens"].get<int64_t>(), tokens);
    }
  }
}

TEST(Text2JsonGenerate, LongPromptsNeedNoTrick) {
  // 128K tokens takes the whole haystack and wraps around; the fit must still land.
  const auto rows =
      generate_text2json(options("organizations", 131072, 25, 25, 1), llama_counter());
  const int64_t measured = llama_counter()(rows[0]["problem"].get<std::string>());
  EXPECT_LE(std::llabs(measured - 131072), 131072 / 20);
}

TEST(Text2JsonGenerate, GoldAnswerStaysUnder1024Tokens) {
  const auto rows = generate_text2json(options("medical", 32768, 80, 80, 1), llama_counter());
  EXPECT_LT(rows[0]["answer_tokens"].get<int64_t>(), 1024);
  EXPECT_LT(llama_counter()(rows[0]["answer"].get<std::string>()), 1024);
  EXPECT_LT(rows[0]["records"].get<int>(), 80);  // records were dropped to fit
  EXPECT_GE(rows[0]["records"].get<int>(), 20);
}

TEST(Text2JsonGenerate, ContentLongerThanTheTargetIsAnError) {
  EXPECT_THROW(generate_text2json(options("products", 2048, 60, 60, 1), llama_counter()), Error);
  EXPECT_THROW(generate_text2json(options("sports", 4096, 5, 5, 1), llama_counter()), Error);
}

TEST(Text2JsonGenerate, EachAttributeHasAtLeastSixPhrasings) {
  for (const DomainSpec& d : text2json_domains()) {
    EXPECT_GE(d.attributes.size(), 6u) << d.id;
    for (const AttributeSpec& a : d.attributes) {
      EXPECT_GE(a.named.size() + a.follow.size(), 6u) << d.id << "." << a.key;
      for (const std::string& t : a.named) {
        EXPECT_NE(t.find("{name}"), std::string::npos) << t;
        EXPECT_NE(t.find("{value}"), std::string::npos) << t;
      }
      for (const std::string& t : a.follow) EXPECT_NE(t.find("{value}"), std::string::npos) << t;
    }
  }
}

}  // namespace
}  // namespace kvo
