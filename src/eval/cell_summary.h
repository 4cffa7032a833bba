// What `kvoffload eval` reports per cell (score, fidelity to dense, KV memory, speed): the
// aggregates, their summary.json form, the cell files' rows and the terminal table.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace kvo {

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

// The rows of a cell file that parse; a torn last line (an interrupted write) is cut off.
std::vector<nlohmann::json> read_cell_rows(const std::string& path);

// The summary table printed at the end of a run.
std::string format_summary_table(const EvalSummary& summary);

}  // namespace kvo
