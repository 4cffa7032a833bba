// KvSpec: which KV-cache policy to build and its knobs, from command-line flags or from a
// method string, so every front end (generate, bench, eval harness, info, diagnose) builds
// policies the same way.
//
// Method string syntax (also what the eval harness passes as (method, knob strings)):
//   spec  := method [ ":" knob "=" value { "," knob "=" value } ]
//   e.g.   yakv:budget=0.03,chunk=1
//          yakv:landmarks=higgs:d=4,n=256,kv-store=fp8
//          shadowkv:rank=96,outliers=0
// A comma-separated piece starts a new knob only when the text before its '=' is a knob name;
// otherwise it belongs to the previous value, so quantizer specs stay whole. A value may also
// be wrapped in parentheses: landmarks=(residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256).
//
// Knobs (the same names as the CLI flags without "--"); "default" = the method's default:
//   budget     selected prompt tokens per KV head: a fraction of the prompt if <= 1, else a
//              token count. Defaults: shadowkv 0.015625, yakv 0.03125, quest 0.0625 (Quest's
//              paper runs 1K-4K tokens at 32K; 2K of 32K is the middle). Sparse methods only.
//   sinks      first N prompt tokens kept exact on the device (default 0), rounded up to whole
//              chunks/pages.
//   group-agg  max | mean: how the scores of the query heads sharing a KV head combine (max).
//   local      last prompt tokens kept exact on the device: shadowkv 32, yakv 64, quest 16
//              (rounded up to whole chunks).
//   chunk      tokens per landmark: shadowkv 8, yakv 1 (quest uses page).
//   page       quest: tokens per page (16).
//   outliers   exact chunks per KV head with the lowest min-cosine-similarity to their mean:
//              shadowkv 48, yakv 0.
//   rank       shadowkv: rank of the pre-RoPE key SVD (160), at most kv_heads * head_dim.
//   landmarks  yakv: quantizer spec of the landmarks (higgs:d=4,n=256); any quant/spec.h spec
//              including residual; "f32" keeps them unquantized.
//   kv-store   yakv (default higgs:d=2,n=256) and shadowkv values (default bf16): how the
//              offloaded K/V are stored in CPU memory: bf16 | fp8 | any quantizer spec | f32
//              (f32 = the CPU reference's exact values, for lossless checks).
//              HIGGS without group=: the Hadamard group is one head (head_dim rounded up to
//              a power of two >= 64), one record per (token, head), so a step fetches only the
//              pairs it selected. DESIGN.md §3's group of all KV heads of a token (group=1024
//              on Llama-3.1-8B) is available explicitly; it fetches ~7x the bytes (a token's
//              record for each selected pair; bench/RESULTS.md, issue 5). Landmark specs
//              without group= use one head the same way.
//   fetch-cache  yakv and shadowkv: on | off (on). Keep the records the latest decode step
//              fetched on the device, per layer, and fetch only the records a step selects
//              anew: the same outputs and selections with fewer PCIe bytes, for the device bytes
//              of two steps' records (kv_layout.h "fetch cache"; with a store spanning the heads,
//              min(H * k * C, middle tokens) whole-token records a layer, twice, e.g. 2.2 GB a
//              sequence for group=1024 at the 8B shape and 128K). to_string() names it only when off:
//              the outputs are the same either way, so accuracy results keyed by a spec stay
//              comparable across it.
// Bad methods, unknown knobs, knobs that do not apply to the method and bad values throw
// kvo::Error naming the knob.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kvo {

struct ModelConfig;

enum class GroupAgg { Max, Mean };

struct KvSpec {
  std::string method = "dense";  // dense | shadowkv | yakv | quest
  // Knobs; negative / empty = the method's default (filled by resolved()).
  double budget = -1;
  int64_t sinks = -1;
  std::string group_agg;  // "max" | "mean"
  int64_t local = -1;
  int64_t chunk = -1;
  int64_t page = -1;
  int64_t outliers = -1;
  int64_t rank = -1;
  std::string landmarks;
  std::string kv_store;
  std::string fetch_cache;  // "on" | "off"

  // Parses "method[:knob=value,...]".
  static KvSpec parse(const std::string& text);
  // A method and its knob strings (name without "--", value), e.g. from the eval harness.
  static KvSpec from_knobs(const std::string& method,
                           const std::vector<std::pair<std::string, std::string>>& knobs);
  // Sets one knob from its string value; kvo::Error for unknown knobs or bad values.
  void set(const std::string& knob, const std::string& value);

  // A copy with every default filled in and every value checked against the method (knobs
  // that do not apply to it are an error). Call before building a policy.
  KvSpec resolved() const;
  bool sparse() const { return method != "dense"; }
  GroupAgg agg() const { return group_agg == "mean" ? GroupAgg::Mean : GroupAgg::Max; }
  bool caches_fetches() const { return fetch_cache != "off"; }
  // Tokens of a prompt of `prompt_tokens` the budget selects (before chunk rounding).
  int64_t budget_tokens(int64_t prompt_tokens) const;
  // Canonical text of a resolved spec ("yakv:budget=0.03125,sinks=0,...").
  std::string to_string() const;
};

// The knob names, for help texts and the harness.
const std::vector<std::string>& kv_knob_names();
// The methods: dense, shadowkv, yakv, quest.
const std::vector<std::string>& kv_method_names();

}  // namespace kvo
