// KV methods and knob sweeps of `kvoffload eval`: the method list and knob flags of the command
// line become the cells' KV configurations (every combination of a method's knob lists).
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace kvo {

// The exact reference method: knobs never apply to it.
inline constexpr const char* kDenseMethod = "dense";

// One knob with the values to sweep. `method` empty = every method but dense.
struct KnobSweep {
  std::string method;
  std::string name;  // without the leading "--"
  std::vector<std::string> values;
};

// One KV configuration: a method and its knob values (in the order given on the command line).
struct KvMethodSpec {
  std::string method;
  std::vector<std::pair<std::string, std::string>> knobs;

  std::string knob_string() const;  // "budget=0.03,chunk=1" ("" when no knobs)
  std::string label() const;        // "yakv budget=0.03,chunk=1" / "dense"
  bool operator==(const KvMethodSpec&) const = default;
};

// Splits a value list: on ';' when the text has one, else on commas, except that a piece
// holding '=' joins the previous piece, so quantizer specs stay whole:
// "0.03,0.06" -> 2 values; "higgs:d=2,n=256,bf16" -> {"higgs:d=2,n=256", "bf16"}.
std::vector<std::string> split_value_list(const std::string& text);

// Method knobs from unrecognized command-line words: "--name value", "--name=value" or a bare
// "--flag" (value ""); "--method:name value" restricts it to one method. Repeated names add
// values. kvo::Error for stray words.
std::vector<KnobSweep> parse_knob_args(const std::vector<std::string>& words);
// One "--kv-opt [METHOD:]NAME=VALUES".
KnobSweep parse_kv_opt(const std::string& text);

// Whether a knob (not restricted to a method) applies to a method; empty = always.
using KnobApplies = std::function<bool(const std::string& method, const KnobSweep& knob)>;

// The cells' KV configurations: each method, dense first (added when `add_dense` and absent),
// with the cartesian product of the knob lists that apply to it (a method-restricted knob
// replaces an unrestricted one of the same name). kvo::Error for an empty or repeated method,
// a knob restricted to a method that is not listed or to dense, or an unrestricted knob that
// applies to no listed method.
std::vector<KvMethodSpec> expand_methods(const std::vector<std::string>& methods,
                                         const std::vector<KnobSweep>& knobs, bool add_dense,
                                         const KnobApplies& applies = {});

}  // namespace kvo
