#include "eval/kv_sweeps.h"

#include <algorithm>
#include <map>
#include <set>

#include "util/error.h"
#include "util/text.h"

namespace kvo {

std::string KvMethodSpec::knob_string() const {
  std::vector<std::string> parts;
  for (const auto& [name, value] : knobs)
    parts.push_back(value.empty() ? name : name + "=" + value);
  return join(parts, ",");
}

std::string KvMethodSpec::label() const {
  const std::string k = knob_string();
  return k.empty() ? method : method + " " + k;
}

std::vector<std::string> split_value_list(const std::string& text) {
  if (text.find(';') != std::string::npos) {
    std::vector<std::string> out;
    for (const std::string& p : split(text, ';')) out.push_back(trim(p));
    return out;
  }
  std::vector<std::string> out;
  for (const std::string& raw : split(text, ',')) {
    const std::string p = trim(raw);
    if (!out.empty() && p.find('=') != std::string::npos) {
      out.back() += "," + p;  // a key=value piece of a spec such as higgs:d=2,n=256
    } else {
      out.push_back(p);
    }
  }
  return out;
}

namespace {

void add_sweep(std::vector<KnobSweep>& sweeps, KnobSweep sweep) {
  check(!sweep.name.empty(), "a method knob needs a name (e.g. --budget 0.03)");
  for (const std::string& v : sweep.values) {
    check(!v.empty() || sweep.values.size() == 1, "--{}: empty value in the list", sweep.name);
  }
  for (KnobSweep& s : sweeps) {
    if (s.method == sweep.method && s.name == sweep.name) {
      for (std::string& v : sweep.values) {
        if (std::find(s.values.begin(), s.values.end(), v) == s.values.end())
          s.values.push_back(std::move(v));
      }
      return;
    }
  }
  sweeps.push_back(std::move(sweep));
}

KnobSweep make_sweep(std::string name, const std::string& value) {
  KnobSweep s;
  if (const size_t colon = name.find(':'); colon != std::string::npos) {
    s.method = name.substr(0, colon);
    name = name.substr(colon + 1);
  }
  s.name = std::move(name);
  s.values = value.empty() ? std::vector<std::string>{""} : split_value_list(value);
  return s;
}

}  // namespace

std::vector<KnobSweep> parse_knob_args(const std::vector<std::string>& words) {
  std::vector<KnobSweep> sweeps;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    check(w.size() > 2 && w.rfind("--", 0) == 0,
          "unexpected argument '{}' (method knobs are written --name value)", w);
    std::string name = w.substr(2), value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      check(!value.empty(), "{}: empty value", w);
    } else if (i + 1 < words.size() && words[i + 1].rfind("--", 0) != 0) {
      value = words[++i];
      check(!value.empty(), "{}: empty value", w);
    }
    add_sweep(sweeps, make_sweep(name, value));
  }
  return sweeps;
}

KnobSweep parse_kv_opt(const std::string& text) {
  const size_t eq = text.find('=');
  check(eq != std::string::npos && eq > 0 && eq + 1 < text.size(),
        "--kv-opt '{}': expected [METHOD:]NAME=VALUE[,VALUE...]", text);
  std::string name = text.substr(0, eq);
  if (name.rfind("--", 0) == 0) name = name.substr(2);
  return make_sweep(name, text.substr(eq + 1));
}

std::vector<KvMethodSpec> expand_methods(const std::vector<std::string>& methods,
                                         const std::vector<KnobSweep>& knobs, bool add_dense,
                                         const KnobApplies& applies) {
  std::vector<std::string> order;
  for (const std::string& raw : methods) {
    const std::string m = trim(raw);
    check(!m.empty(), "--kv: empty method name in the list");
    check(std::find(order.begin(), order.end(), m) == order.end(), "--kv: '{}' is listed twice", m);
    order.push_back(m);
  }
  check(!order.empty(), "--kv: no KV method given");
  const bool has_dense = std::find(order.begin(), order.end(), kDenseMethod) != order.end();
  if (has_dense || add_dense) {
    order.erase(std::remove(order.begin(), order.end(), kDenseMethod), order.end());
    order.insert(order.begin(), kDenseMethod);
  }
  for (const KnobSweep& k : knobs) {
    if (k.method.empty()) continue;
    check(k.method != kDenseMethod, "--{}:{}: dense is the exact reference and takes no knobs",
          k.method, k.name);
    check(std::find(order.begin(), order.end(), k.method) != order.end(),
          "--{}:{}: method '{}' is not in --kv", k.method, k.name, k.method);
  }
  auto applies_to = [&](const std::string& m, const KnobSweep& k) {
    if (m == kDenseMethod) return false;
    if (!k.method.empty()) return k.method == m;
    return !applies || applies(m, k);
  };
  for (const KnobSweep& k : knobs) {
    const bool any = std::any_of(order.begin(), order.end(),
                                 [&](const std::string& m) { return applies_to(m, k); });
    check(any, "--{}: no method in --kv can take it (dense, the exact reference, takes no knobs)",
          k.name);
  }
  std::vector<KvMethodSpec> specs;
  for (const std::string& m : order) {
    if (m == kDenseMethod) {
      specs.push_back({m, {}});
      continue;
    }
    // The knobs for m: general ones, replaced by m-specific ones of the same name.
    std::vector<const KnobSweep*> apply;
    for (const KnobSweep& k : knobs) {
      if (!applies_to(m, k)) continue;
      auto same = std::find_if(apply.begin(), apply.end(),
                               [&](const KnobSweep* a) { return a->name == k.name; });
      if (same == apply.end()) {
        apply.push_back(&k);
      } else if (!k.method.empty()) {
        *same = &k;
      }
    }
    std::vector<KvMethodSpec> product{{m, {}}};
    for (const KnobSweep* k : apply) {
      std::vector<KvMethodSpec> next;
      for (const KvMethodSpec& base : product) {
        for (const std::string& v : k->values) {
          KvMethodSpec s = base;
          s.knobs.emplace_back(k->name, v);
          next.push_back(std::move(s));
        }
      }
      product = std::move(next);
    }
    specs.insert(specs.end(), product.begin(), product.end());
  }
  return specs;
}

}  // namespace kvo
