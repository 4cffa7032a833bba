#include "kv/kv_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "kv/kv_store.h"
#include "util/error.h"
#include "util/text.h"

namespace kvo {
namespace {

bool is_knob(const std::string& name) {
  const auto& k = kv_knob_names();
  return std::find(k.begin(), k.end(), name) != k.end();
}

bool is_method(const std::string& name) {
  const auto& m = kv_method_names();
  return std::find(m.begin(), m.end(), name) != m.end();
}

int64_t parse_int(const std::string& knob, const std::string& v) {
  int64_t x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  check(ec == std::errc() && p == v.data() + v.size() && !v.empty(),
        "--{}: expected an integer, got '{}'", knob, v);
  return x;
}

// Which knobs each method accepts.
bool applies(const std::string& method, const std::string& knob) {
  if (method == "dense") return false;
  if (knob == "budget" || knob == "sinks" || knob == "group-agg" || knob == "local") return true;
  if (method == "shadowkv")
    return knob == "chunk" || knob == "outliers" || knob == "rank" || knob == "kv-store" ||
           knob == "fetch-cache";
  if (method == "yakv")
    return knob == "chunk" || knob == "outliers" || knob == "landmarks" || knob == "kv-store" ||
           knob == "fetch-cache";
  if (method == "quest") return knob == "page";
  return false;
}

std::string methods_list() {
  std::string s;
  for (const auto& m : kv_method_names()) s += (s.empty() ? "" : ", ") + m;
  return s;
}

}  // namespace

const std::vector<std::string>& kv_knob_names() {
  static const std::vector<std::string> names = {"budget",    "sinks",    "group-agg",  "local",
                                                 "chunk",     "page",     "outliers",   "rank",
                                                 "landmarks", "kv-store", "fetch-cache"};
  return names;
}

const std::vector<std::string>& kv_method_names() {
  static const std::vector<std::string> names = {"dense", "shadowkv", "yakv", "quest"};
  return names;
}

void KvSpec::set(const std::string& knob_in, const std::string& value_in) {
  const std::string knob = trim(knob_in), v = unwrap_parens(value_in);
  check(is_knob(knob),
        "unknown KV knob '{}' (expected one of budget, sinks, group-agg, local, "
        "chunk, page, outliers, rank, landmarks, kv-store, fetch-cache)",
        knob);
  check(!v.empty(), "--{}: empty value", knob);
  if (knob == "budget") {
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    check(end == v.c_str() + v.size() && std::isfinite(x),
          "--budget: expected a number (a fraction of the prompt <= 1, or tokens), got '{}'", v);
    check(x > 0, "--budget must be > 0 (a fraction of the prompt <= 1, or tokens), got {}", v);
    // 2^53: every whole number up to it is exact in a double and fits the token counts.
    check(x <= 1 || (x == std::floor(x) && x <= 0x1p53),
          "--budget {}: a budget above 1 counts tokens and must be a whole number up to 2^53", v);
    budget = x;
  } else if (knob == "sinks") {
    sinks = parse_int(knob, v);
    check(sinks >= 0, "--sinks must be >= 0, got {}", sinks);
  } else if (knob == "group-agg") {
    check(v == "max" || v == "mean", "--group-agg must be max or mean, got '{}'", v);
    group_agg = v;
  } else if (knob == "local") {
    local = parse_int(knob, v);
    check(local >= 0, "--local must be >= 0 tokens, got {}", local);
  } else if (knob == "chunk") {
    chunk = parse_int(knob, v);
    check(chunk >= 1 && chunk <= 4096, "--chunk must be in 1..4096 tokens, got {}", chunk);
  } else if (knob == "page") {
    page = parse_int(knob, v);
    check(page >= 1 && page <= 4096, "--page must be in 1..4096 tokens, got {}", page);
  } else if (knob == "outliers") {
    outliers = parse_int(knob, v);
    check(outliers >= 0, "--outliers must be >= 0 chunks, got {}", outliers);
  } else if (knob == "rank") {
    rank = parse_int(knob, v);
    check(rank >= 1, "--rank must be >= 1, got {}", rank);
  } else if (knob == "landmarks") {
    validate_store_spec(v, "--landmarks");
    landmarks = v;
  } else if (knob == "kv-store") {
    validate_store_spec(v, "--kv-store");
    check(v.rfind("residual", 0) != 0,
          "--kv-store {}: a residual quantizer has no fixed per-token record to gather; use "
          "it for --landmarks",
          v);
    kv_store = v;
  } else if (knob == "fetch-cache") {
    check(v == "on" || v == "off", "--fetch-cache must be on or off, got '{}'", v);
    fetch_cache = v;
  }
}

KvSpec KvSpec::from_knobs(const std::string& method,
                          const std::vector<std::pair<std::string, std::string>>& knobs) {
  KvSpec s;
  s.method = trim(method);
  check(is_method(s.method), "unknown --kv method '{}' (available: {})", s.method, methods_list());
  for (const auto& [k, v] : knobs) {
    std::string name = trim(k);
    if (name.rfind("--", 0) == 0) name = name.substr(2);
    check(is_knob(name),
          "unknown KV knob '{}' (expected one of budget, sinks, group-agg, local, "
          "chunk, page, outliers, rank, landmarks, kv-store, fetch-cache)",
          name);
    check(applies(s.method, name), "--{} does not apply to --kv {}", name, s.method);
    s.set(name, v);
  }
  return s;
}

KvSpec KvSpec::parse(const std::string& text_in) {
  const std::string text = trim(text_in);
  const size_t colon = text.find(':');
  const std::string method = trim(text.substr(0, colon));
  std::vector<std::pair<std::string, std::string>> knobs;
  if (colon != std::string::npos) {
    const std::string body = text.substr(colon + 1);
    check(!trim(body).empty(), "KV spec '{}' has ':' but no knobs", text);
    // Split at top-level commas; a piece continues the previous value unless it starts with
    // "<knob>=".
    for (const std::string& raw : split_top_level(body, ',', fmt::format("KV spec '{}'", text))) {
      const std::string p = trim(raw);
      const size_t eq = p.find('=');
      const std::string key = eq == std::string::npos ? "" : trim(p.substr(0, eq));
      if (is_knob(key)) {
        knobs.emplace_back(key, p.substr(eq + 1));
      } else {
        check(!knobs.empty(), "unknown KV knob '{}' in KV spec '{}'",
              eq == std::string::npos ? p : key, text);
        knobs.back().second += "," + p;
      }
    }
  }
  return from_knobs(method, knobs);
}

KvSpec KvSpec::resolved() const {
  KvSpec s = *this;
  check(is_method(s.method), "unknown --kv method '{}' (available: {})", s.method, methods_list());
  auto reject = [&](bool given, const char* knob) {
    check(!given || applies(s.method, knob), "--{} does not apply to --kv {}", knob, s.method);
  };
  reject(s.budget >= 0, "budget");
  reject(s.sinks >= 0, "sinks");
  reject(!s.group_agg.empty(), "group-agg");
  reject(s.local >= 0, "local");
  reject(s.chunk >= 0, "chunk");
  reject(s.page >= 0, "page");
  reject(s.outliers >= 0, "outliers");
  reject(s.rank >= 0, "rank");
  reject(!s.landmarks.empty(), "landmarks");
  reject(!s.kv_store.empty(), "kv-store");
  reject(!s.fetch_cache.empty(), "fetch-cache");
  if (s.method == "dense") return s;
  auto dflt = [](auto& field, auto value, bool unset) {
    if (unset) field = value;
  };
  dflt(s.sinks, int64_t{0}, s.sinks < 0);
  dflt(s.group_agg, std::string("max"), s.group_agg.empty());
  if (s.method == "shadowkv") {
    dflt(s.budget, 0.015625, s.budget < 0);
    dflt(s.local, int64_t{32}, s.local < 0);
    dflt(s.chunk, int64_t{8}, s.chunk < 0);
    dflt(s.outliers, int64_t{48}, s.outliers < 0);
    dflt(s.rank, int64_t{160}, s.rank < 0);
    dflt(s.kv_store, std::string("bf16"), s.kv_store.empty());
    dflt(s.fetch_cache, std::string("on"), s.fetch_cache.empty());
  } else if (s.method == "yakv") {
    dflt(s.budget, 0.03125, s.budget < 0);
    dflt(s.local, int64_t{64}, s.local < 0);
    dflt(s.chunk, int64_t{1}, s.chunk < 0);
    dflt(s.outliers, int64_t{0}, s.outliers < 0);
    dflt(s.landmarks, std::string("higgs:d=4,n=256"), s.landmarks.empty());
    dflt(s.kv_store, std::string("higgs:d=2,n=256"), s.kv_store.empty());
    dflt(s.fetch_cache, std::string("on"), s.fetch_cache.empty());
  } else if (s.method == "quest") {
    dflt(s.budget, 0.0625, s.budget < 0);
    dflt(s.local, int64_t{16}, s.local < 0);
    dflt(s.page, int64_t{16}, s.page < 0);
  }
  return s;
}

int64_t KvSpec::budget_tokens(int64_t prompt_tokens) const {
  if (budget <= 1.0) return int64_t(std::ceil(budget * double(prompt_tokens) - 1e-9));
  return int64_t(budget);
}

std::string KvSpec::to_string() const {
  if (method == "dense") return method;
  std::string s =
      method + ":" +
      fmt::format("budget={},sinks={},group-agg={},local={}", budget, sinks, group_agg, local);
  if (method == "quest") return s + fmt::format(",page={}", page);
  s += fmt::format(",chunk={},outliers={}", chunk, outliers);
  if (method == "shadowkv") s += fmt::format(",rank={}", rank);
  if (method == "yakv") s += ",landmarks=(" + landmarks + ")";
  s += ",kv-store=(" + kv_store + ")";
  return caches_fetches() ? s : s + ",fetch-cache=off";
}

}  // namespace kvo
