// The one scoring entry point for the eval harness: given a dataset row and a model output,
// the per-sample score in [0, 1] and whether the sample is excluded from the average.
//
//   SampleScore s = score_sample(sample_task(row), row, output);
//
// - "text2json" rows ({"problem", "answer"}, the released dataset's format, or ours): the
//   Text2JSON reference scorer (eval/text2json_score.h); excluded when the gold list has a
//   duplicate name. A task's final score is 100 x the mean over non-excluded samples.
// - contrast-task rows ({"task", "answers": [...]}) : string_match_all, never excluded.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "eval/text2json_score.h"

namespace kvo {

// The task a row belongs to: its "task" field, else "text2json" (released rows have none).
std::string sample_task(const nlohmann::json& sample);

// kvo::Error when the row lacks the fields its task needs or the task is unknown; `where`
// (e.g. "data.jsonl:7") prefixes such messages.
SampleScore score_sample(const std::string& task, const nlohmann::json& sample,
                         const std::string& output, const std::string& where = "sample");

// Agreement of `output` with `reference_output` (the dense run's output of the same sample),
// in [0, 1], for the harness's fidelity column:
// - text2json: the Text2JSON scorer with the reference output's list as gold (its records that
//   are objects with a string "name"; values that are null, booleans or objects are dropped).
//   When the reference has no list by the bracket rule, 1 if the outputs are equal, else 0.
// - other tasks: the fraction of the sample's reference answers on which both outputs agree
//   (both contain it, or both miss it).
double agreement_score(const std::string& task, const nlohmann::json& sample,
                       const std::string& reference_output, const std::string& output);

}  // namespace kvo
