// Contrast tasks: determinism, length, answers present in the prompt, and task-specific checks.
#include "eval/tasks.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "eval_test_support.h"
#include "util/error.h"

namespace kvo {
namespace {

using testing::llama_counter;

TaskOptions task_options(const std::string& task, int64_t tokens, size_t n, uint64_t seed = 5) {
  TaskOptions o;
  o.task = task;
  o.target_tokens = tokens;
  o.n = n;
  o.seed = seed;
  o.haystack_dir = testing::test_haystack_dir();
  return o;
}

size_t expected_answers(const std::string& task) {
  if (task == "niah_multivalue") return 4;
  if (task == "variable_tracking") return 5;
  if (task == "frequent_words") return 3;
  return 1;
}

TEST(Tasks, EveryTaskIsDeterministicFitsAndContainsItsAnswers) {
  for (const TaskInfo& info : contrast_tasks()) {
    SCOPED_TRACE(info.name);
    for (int64_t tokens : {2048, 8192}) {
      const TaskOptions o = task_options(info.name, tokens, 3);
      const auto a = generate_task(o, llama_counter());
      const auto b = generate_task(o, llama_counter());
      ASSERT_EQ(a.size(), 3u);
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].dump(), b[i].dump());
        const std::string& problem = a[i]["problem"].get_ref<const std::string&>();
        const int64_t measured = llama_counter()(problem);
        EXPECT_EQ(measured, a[i]["prompt_tokens"].get<int64_t>());
        EXPECT_LE(std::llabs(measured - tokens), tokens / 20);
        EXPECT_EQ(a[i]["task"], info.name);
        const auto answers = a[i]["answers"].get<std::vector<std::string>>();
        EXPECT_EQ(answers.size(), expected_answers(info.name));
        for (const std::string& ans : answers) EXPECT_NE(problem.find(ans), std::string::npos);
      }
      EXPECT_NE(a[0].dump(), a[1].dump());
    }
  }
}

TEST(Tasks, FrequentWordsAnswersAreTheTopThree) {
  const auto rows = generate_task(task_options("frequent_words", 4096, 3), llama_counter());
  for (const auto& row : rows) {
    const std::string problem = row["problem"].get<std::string>();
    // The coded text sits between the instruction and the question.
    const size_t begin = problem.find("coded words. ") + 13;
    const size_t end = problem.find("\nQuestion:");
    std::map<std::string, int> freq;
    std::istringstream in(problem.substr(begin, end - begin));
    for (std::string w; in >> w;) {
      if (w != "....") freq[w]++;
    }
    std::vector<std::pair<int, std::string>> by_count;
    for (auto& [w, c] : freq) by_count.push_back({c, w});
    std::sort(by_count.rbegin(), by_count.rend());
    const auto answers = row["answers"].get<std::vector<std::string>>();
    ASSERT_GT(by_count.size(), 3u);
    EXPECT_GT(by_count[2].first, by_count[3].first);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(answers[i], by_count[i].second);
  }
}

TEST(Tasks, VariableTrackingChainIsInOrder) {
  const auto rows = generate_task(task_options("variable_tracking", 4096, 2), llama_counter());
  for (const auto& row : rows) {
    const std::string problem = row["problem"].get<std::string>();
    const auto vars = row["answers"].get<std::vector<std::string>>();
    size_t prev = problem.find("VAR " + vars[0] + " = ");
    ASSERT_NE(prev, std::string::npos);
    for (size_t i = 1; i < vars.size(); ++i) {
      const size_t at = problem.find("VAR " + vars[i] + " = VAR " + vars[i - 1] + ".");
      ASSERT_NE(at, std::string::npos);
      EXPECT_GT(at, prev);
      prev = at;
    }
  }
}

TEST(Tasks, JsonKvPromptHoldsValidJson) {
  const auto rows = generate_task(task_options("json_kv", 4096, 2), llama_counter());
  for (const auto& row : rows) {
    const std::string problem = row["problem"].get<std::string>();
    const size_t begin = problem.find('{'), end = problem.rfind('}');
    const nlohmann::json obj = nlohmann::json::parse(problem.substr(begin, end - begin + 1));
    const size_t key_at = problem.find("Key: \"") + 6;
    const std::string key = problem.substr(key_at, problem.find('"', key_at) - key_at);
    EXPECT_EQ(obj.at(key), row["answers"][0]);
  }
}

TEST(Tasks, UnknownTaskAndBadLengthAreErrors) {
  EXPECT_THROW(generate_task(task_options("niah_single", 4096, 1), llama_counter()), Error);
  EXPECT_THROW(generate_task(task_options("json_kv", 100, 1), llama_counter()), Error);
}

}  // namespace
}  // namespace kvo
