// HELMET's JSON key-value retrieval: one JSON object of random UUID pairs; the answer is the
// value of one key, asked with HELMET's wording.
#include <fmt/format.h>

#include "eval/rng.h"
#include "eval/tasks.h"

namespace kvo {
namespace {

std::string uuid4(Rng& rng) {
  const uint64_t a = rng.next(), b = rng.next();
  // Version 4 and RFC 4122 variant bits, as Python's uuid.uuid4() writes them.
  return fmt::format("{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}", uint32_t(a >> 32),
                     uint32_t((a >> 16) & 0xffff), uint32_t(a & 0xfff),
                     uint32_t(8 + ((b >> 62) & 3)), uint32_t((b >> 48) & 0xfff),
                     b & 0xffffffffffffull);
}

}  // namespace

nlohmann::ordered_json generate_json_kv(const TaskOptions& options, size_t index,
                                        const TokenCounter& count) {
  Rng rng(sample_seed(options.seed, options.task, index));
  const double query_depth = rng.unit();
  std::vector<std::pair<std::string, std::string>> pairs;  // grows lazily, prefix-stable
  auto build = [&](size_t units) {
    units = std::max<size_t>(units, 1);
    while (pairs.size() < units) pairs.push_back({uuid4(rng), uuid4(rng)});
    std::string obj = "{";
    for (size_t i = 0; i < units; ++i) {
      if (i > 0) obj += ", ";
      obj += fmt::format("\"{}\": \"{}\"", pairs[i].first, pairs[i].second);
    }
    obj += "}";
    const auto& query = pairs[std::min(units - 1, size_t(query_depth * double(units)))];
    return fmt::format(
        "Extract the value corresponding to the specified key in the JSON object below.\n\n"
        "JSON data:\n{}\n\nKey: \"{}\"\nCorresponding value:",
        obj, query.first);
  };
  FitResult fit = fit_to_tokens(build, count, options.target_tokens, 50.0, 1u << 20,
                                fmt::format("{} sample {}", options.task, index));
  const size_t units = std::max<size_t>(fit.units, 1);
  const auto& query = pairs[std::min(units - 1, size_t(query_depth * double(units)))];
  return task_row(options, index, fit, {query.second});
}

}  // namespace kvo
