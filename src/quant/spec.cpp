#include "quant/spec.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <vector>

#include "quant/bf16.h"
#include "quant/fp8.h"
#include "quant/higgs.h"
#include "quant/residual.h"
#include "quant/uniform.h"
#include "util/error.h"
#include "util/text.h"

namespace kvo::quant {
namespace {

using Params = std::map<std::string, std::string>;

Params parse_params(const std::string& family, const std::string& body,
                    const std::vector<std::string>& allowed, const std::string& whole) {
  Params params;
  if (trim(body).empty()) return params;
  const bool nested_ok = family == "residual";
  std::string open_key;  // residual: the key whose nested spec is still collecting tokens
  for (const std::string& raw :
       split_top_level(body, ',', fmt::format("quantizer spec '{}'", whole))) {
    const std::string tok = trim(raw);
    const size_t eq = tok.find('=');
    const std::string key = eq == std::string::npos ? "" : trim(tok.substr(0, eq));
    const bool is_own = std::find(allowed.begin(), allowed.end(), key) != allowed.end();
    if (nested_ok && !open_key.empty() && !is_own) {
      params[open_key] += "," + tok;
      continue;
    }
    check(eq != std::string::npos, "expected key=value, got '{}' in quantizer spec '{}'", tok,
          whole);
    if (!is_own) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      if (list.empty()) list = "no keys";
      fail("unknown key '{}' for {} in quantizer spec '{}' (expected {})", key, family, whole,
           list);
    }
    check(!params.count(key), "key '{}' given twice in quantizer spec '{}'", key, whole);
    params[key] = trim(tok.substr(eq + 1));
    check(!params[key].empty(), "empty value for key '{}' in quantizer spec '{}'", key, whole);
    open_key = (key == "meta" || key == "res") ? key : "";
  }
  return params;
}

int int_param(const Params& p, const std::string& key, int fallback, bool required,
              const std::string& family, const std::string& whole) {
  auto it = p.find(key);
  if (it == p.end()) {
    check(!required, "missing key '{}' for {} in quantizer spec '{}'", key, family, whole);
    return fallback;
  }
  int v = 0;
  const std::string& s = it->second;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  check(ec == std::errc() && ptr == s.data() + s.size(),
        "bad value '{}' for key '{}' in quantizer spec '{}': expected an integer", s, key, whole);
  return v;
}

}  // namespace

QuantizerPtr parse_quantizer(const std::string& spec_in, int higgs_default_group) {
  const std::string spec = trim(spec_in);
  check(!spec.empty(), "empty quantizer spec");
  const size_t colon = spec.find(':');
  const std::string family = trim(spec.substr(0, colon));
  const std::string body = colon == std::string::npos ? "" : spec.substr(colon + 1);
  check(colon == std::string::npos || !trim(body).empty(),
        "quantizer spec '{}' has ':' but no parameters", spec);
  try {
    if (family == "higgs") {
      const Params p = parse_params(family, body, {"d", "n", "group"}, spec);
      return std::make_unique<HiggsQuantizer>(
          int_param(p, "d", 0, true, family, spec), int_param(p, "n", 0, true, family, spec),
          int_param(p, "group", higgs_default_group, false, family, spec));
    }
    if (family == "uniform") {
      const Params p = parse_params(family, body, {"bits", "group"}, spec);
      return std::make_unique<UniformQuantizer>(int_param(p, "bits", 0, true, family, spec),
                                                int_param(p, "group", 64, false, family, spec));
    }
    if (family == "fp8" || family == "bf16") {
      parse_params(family, body, {}, spec);
      if (family == "fp8") return std::make_unique<Fp8Quantizer>();
      return std::make_unique<Bf16Quantizer>();
    }
    if (family == "residual") {
      const Params p = parse_params(family, body, {"m", "meta", "res"}, spec);
      const int m = int_param(p, "m", 0, true, family, spec);
      check(p.count("meta"), "missing key 'meta' for residual in quantizer spec '{}'", spec);
      check(p.count("res"), "missing key 'res' for residual in quantizer spec '{}'", spec);
      return std::make_unique<ResidualQuantizer>(
          m, parse_quantizer(unwrap_parens(p.at("meta")), higgs_default_group),
          parse_quantizer(unwrap_parens(p.at("res")), higgs_default_group));
    }
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.find(spec) != std::string::npos) throw;
    fail("{} (in quantizer spec '{}')", msg, spec);
  }
  fail("unknown quantizer '{}' in spec '{}' (expected higgs, uniform, fp8, bf16 or residual)",
       family, spec);
}

}  // namespace kvo::quant
