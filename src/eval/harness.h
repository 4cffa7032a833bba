// The evaluation harness behind `kvoffload eval`: runs every (task, length, KV method, knob
// setting) cell over a dataset's samples, one JSONL row per sample in OUT/<cell>.jsonl, resumes
// where a previous run stopped, and summarizes score, fidelity to dense and KV memory per cell.
//
// The harness lives in the library and knows nothing about the CLI: the caller hands it the
// loaded model and a function that builds a KV policy for a method spec (cli/eval.cpp builds it
// through make_kv_policy), so tests and other front ends can drive it too.
//
// Cells and knobs. `--kv a,b` lists methods; method knobs are passed through as strings
// (name -> list of values) and every combination of the lists becomes one cell (a sweep).
// Knobs never apply to `dense`, the exact reference; a knob may be restricted to one method
// ("yakv:budget"). The cell id is task/length/method[/knob=value,...].
//
// Fidelity. The dense output of the same sample is the reference: fidelity =
// agreement_score(task, sample, dense output, method output). `dense` is added (and run first)
// whenever it is not requested, unless EvalOptions::reference_dense is false.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "eval/jsonl.h"
#include "kv/kv_policy.h"
#include "model/model.h"
#include "model/transformer.h"

namespace kvo {

// ---- KV methods and knob sweeps ---------------------------------------------------------

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

// ---- Datasets ----------------------------------------------------------------------------

struct EvalDataset {
  std::string task;    // label: a task name, or the file's stem for --data
  std::string length;  // "2k", "4k", ... or "all" for --data
  std::string path;
};

// data/ of the checkout (compiled-in source dir, else beside the binary, else ./data).
std::string default_data_dir();
// Task names with shipped sets (text2json + the contrast tasks).
std::vector<std::string> shipped_tasks();
// The lengths (in tokens) shipped for a task in `data_dir`, ascending.
std::vector<int64_t> shipped_lengths(const std::string& data_dir, const std::string& task);
// The shipped file of each (task, length); every shipped length when `lengths` is empty.
// kvo::Error names the task or length that has no file and lists what exists.
std::vector<EvalDataset> resolve_datasets(const std::vector<std::string>& tasks,
                                          const std::vector<int64_t>& lengths,
                                          const std::string& data_dir);
// A user's own JSONL (released Text2JSON format or ours) as one dataset.
EvalDataset user_dataset(const std::string& path);

// The task's own generation limit: Text2JSON 1024 (DESIGN.md §5), the contrast tasks less.
int task_generation_limit(const std::string& task);

// ---- Running -----------------------------------------------------------------------------

struct EvalOptions {
  std::string out_dir;
  size_t limit = 0;        // first N samples of each dataset; 0 = all
  int max_new_tokens = 0;  // cap on the task's limit; 0 = the task's limit
  bool reference_dense = true;
  bool quiet = false;  // no per-cell lines on stderr
};

// What the harness needs from the engine.
struct EvalEngine {
  Model* model = nullptr;
  Transformer* transformer = nullptr;
  std::string device;             // for the summary
  std::vector<int32_t> stop_ids;  // end-of-turn ids (cli: stop_token_ids(model))
  // A fresh policy for one sequence of at most `capacity` tokens.
  std::function<std::unique_ptr<KvPolicy>(const KvMethodSpec&, int64_t capacity)> make_policy;
};

struct EvalCell {
  EvalDataset dataset;
  KvMethodSpec spec;
  std::string id() const;         // task/length/method[/knobs]
  std::string file_name() const;  // a safe file name for id(), ".jsonl"
};

// Per-cell aggregates. Sums are kept so cells can be pooled (the report pools lengths).
struct CellSummary {
  std::string id, task, length, method, knobs;
  std::vector<std::pair<std::string, std::string>> knob_values;  // knobs as (name, value)
  int64_t rows = 0;                                              // samples run or skipped
  int64_t scored = 0;                                            // not skipped, not excluded
  int64_t excluded = 0;                                          // Text2JSON: duplicate gold names
  int64_t skipped = 0;                                           // too long for the model's context
  double score_sum = 0;                                          // of per-sample scores in [0, 1]
  int64_t fidelity_n = 0;
  double fidelity_sum = 0;
  int64_t prompt_tokens = 0, output_tokens = 0, kv_capacity = 0;
  double gpu_bytes = 0, cpu_bytes = 0, pcie_bytes_per_step = 0;  // sums over samples
  double paired_gpu_bytes = 0, paired_dense_gpu_bytes = 0;       // on samples dense also ran
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t decode_tokens = 0;  // tokens generated after the first (decode speed)

  int64_t ran() const { return rows - skipped; }
  double score() const;                // 100 x mean; NaN when nothing scored
  double fidelity() const;             // 100 x mean agreement with dense; NaN without dense
  double gpu_bytes_per_token() const;  // per token of KV capacity (prompt + generation limit)
  double cpu_bytes_per_token() const;
  double fraction_of_dense() const;  // GPU KV bytes / dense's on the same samples; NaN
  double mean_prompt_tokens() const;
  void add(const CellSummary& other);  // pools another cell's sums into this one
  nlohmann::ordered_json to_json() const;
  static CellSummary from_json(const nlohmann::json& j);
};

struct EvalSummary {
  std::string model, device;
  int max_new_tokens = 0;
  std::vector<CellSummary> cells;
  nlohmann::ordered_json to_json() const;
  static EvalSummary from_json(const nlohmann::json& j);
};

// Runs every cell (datasets x specs, dense first per dataset), appending rows to
// OUT/<cell>.jsonl, skipping rows already there, then writes OUT/summary.json and returns it.
EvalSummary run_eval(const std::vector<EvalDataset>& datasets,
                     const std::vector<KvMethodSpec>& specs, const EvalOptions& options,
                     EvalEngine& engine);

// The rows of a cell file that parse; a torn last line (an interrupted write) is cut off.
std::vector<nlohmann::json> read_cell_rows(const std::string& path);

// The summary table printed at the end of a run.
std::string format_summary_table(const EvalSummary& summary);

}  // namespace kvo
