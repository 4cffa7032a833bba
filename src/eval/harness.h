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
#include <string>
#include <vector>

#include "eval/cell_summary.h"
#include "eval/datasets.h"
#include "eval/kv_sweeps.h"
#include "kv/kv_policy.h"
#include "model/model.h"
#include "model/transformer.h"

namespace kvo {

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

// Runs every cell (datasets x specs, dense first per dataset), appending rows to
// OUT/<cell>.jsonl, skipping rows already there, then writes OUT/summary.json and returns it.
EvalSummary run_eval(const std::vector<EvalDataset>& datasets,
                     const std::vector<KvMethodSpec>& specs, const EvalOptions& options,
                     EvalEngine& engine);

}  // namespace kvo
