#include "eval/cell_summary.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace kvo {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::json;
using OJson = nlohmann::ordered_json;

double nan() {
  return std::nan("");
}

OJson number_or_null(double v) {
  return std::isfinite(v) ? OJson(v) : OJson(nullptr);
}

}  // namespace

double CellSummary::score() const {
  return scored > 0 ? 100.0 * score_sum / double(scored) : nan();
}
double CellSummary::fidelity() const {
  return fidelity_n > 0 ? 100.0 * fidelity_sum / double(fidelity_n) : nan();
}
double CellSummary::gpu_bytes_per_token() const {
  return kv_capacity > 0 ? gpu_bytes / double(kv_capacity) : nan();
}
double CellSummary::cpu_bytes_per_token() const {
  return kv_capacity > 0 ? cpu_bytes / double(kv_capacity) : nan();
}
double CellSummary::fraction_of_dense() const {
  return paired_dense_gpu_bytes > 0 ? paired_gpu_bytes / paired_dense_gpu_bytes : nan();
}
double CellSummary::mean_prompt_tokens() const {
  return ran() > 0 ? double(prompt_tokens) / double(ran()) : nan();
}

void CellSummary::add(const CellSummary& o) {
  rows += o.rows;
  scored += o.scored;
  excluded += o.excluded;
  skipped += o.skipped;
  score_sum += o.score_sum;
  fidelity_n += o.fidelity_n;
  fidelity_sum += o.fidelity_sum;
  prompt_tokens += o.prompt_tokens;
  output_tokens += o.output_tokens;
  kv_capacity += o.kv_capacity;
  gpu_bytes += o.gpu_bytes;
  cpu_bytes += o.cpu_bytes;
  pcie_bytes_per_step += o.pcie_bytes_per_step;
  paired_gpu_bytes += o.paired_gpu_bytes;
  paired_dense_gpu_bytes += o.paired_dense_gpu_bytes;
  prefill_seconds += o.prefill_seconds;
  decode_seconds += o.decode_seconds;
  decode_tokens += o.decode_tokens;
}

OJson CellSummary::to_json() const {
  OJson j;
  j["id"] = id;
  j["task"] = task;
  j["length"] = length;
  j["method"] = method;
  j["knobs"] = knobs;
  j["knob_values"] = OJson::object();
  for (const auto& [name, value] : knob_values) j["knob_values"][name] = value;
  j["score"] = number_or_null(score());
  j["fidelity"] = number_or_null(fidelity());
  j["samples"] = ran();
  j["excluded"] = excluded;
  j["skipped_too_long"] = skipped;
  j["gpu_kv_bytes_per_token"] = number_or_null(gpu_bytes_per_token());
  j["cpu_kv_bytes_per_token"] = number_or_null(cpu_bytes_per_token());
  j["gpu_kv_fraction_of_dense"] = number_or_null(fraction_of_dense());
  j["mean_prompt_tokens"] = number_or_null(mean_prompt_tokens());
  j["pcie_bytes_per_step"] = number_or_null(ran() > 0 ? pcie_bytes_per_step / ran() : nan());
  j["prefill_tokens_per_second"] =
      number_or_null(prefill_seconds > 0 ? double(prompt_tokens) / prefill_seconds : nan());
  j["decode_tokens_per_second"] =
      number_or_null(decode_seconds > 0 ? double(decode_tokens) / decode_seconds : nan());
  j["sums"] = {{"rows", rows},
               {"scored", scored},
               {"score", score_sum},
               {"fidelity_n", fidelity_n},
               {"fidelity", fidelity_sum},
               {"prompt_tokens", prompt_tokens},
               {"output_tokens", output_tokens},
               {"kv_capacity", kv_capacity},
               {"gpu_bytes", gpu_bytes},
               {"cpu_bytes", cpu_bytes},
               {"pcie_bytes_per_step", pcie_bytes_per_step},
               {"paired_gpu_bytes", paired_gpu_bytes},
               {"paired_dense_gpu_bytes", paired_dense_gpu_bytes},
               {"prefill_seconds", prefill_seconds},
               {"decode_seconds", decode_seconds},
               {"decode_tokens", decode_tokens}};
  return j;
}

CellSummary CellSummary::from_json(const Json& j) {
  CellSummary c;
  try {
    c.id = j.at("id").get<std::string>();
    c.task = j.at("task").get<std::string>();
    c.length = j.at("length").get<std::string>();
    c.method = j.at("method").get<std::string>();
    c.knobs = j.value("knobs", "");
    if (auto kv = j.find("knob_values"); kv != j.end() && kv->is_object()) {
      for (const auto& [name, value] : kv->items()) {
        c.knob_values.emplace_back(name,
                                   value.is_string() ? value.get<std::string>() : value.dump());
      }
    }
    c.excluded = j.value("excluded", int64_t{0});
    c.skipped = j.value("skipped_too_long", int64_t{0});
    const Json& s = j.at("sums");
    c.rows = s.at("rows").get<int64_t>();
    c.scored = s.at("scored").get<int64_t>();
    c.score_sum = s.at("score").get<double>();
    c.fidelity_n = s.at("fidelity_n").get<int64_t>();
    c.fidelity_sum = s.at("fidelity").get<double>();
    c.prompt_tokens = s.at("prompt_tokens").get<int64_t>();
    c.output_tokens = s.at("output_tokens").get<int64_t>();
    c.kv_capacity = s.at("kv_capacity").get<int64_t>();
    c.gpu_bytes = s.at("gpu_bytes").get<double>();
    c.cpu_bytes = s.at("cpu_bytes").get<double>();
    c.pcie_bytes_per_step = s.at("pcie_bytes_per_step").get<double>();
    c.paired_gpu_bytes = s.at("paired_gpu_bytes").get<double>();
    c.paired_dense_gpu_bytes = s.at("paired_dense_gpu_bytes").get<double>();
    c.prefill_seconds = s.at("prefill_seconds").get<double>();
    c.decode_seconds = s.at("decode_seconds").get<double>();
    c.decode_tokens = s.at("decode_tokens").get<int64_t>();
  } catch (const Json::exception& e) {
    fail("summary cell is malformed ({})", e.what());
  }
  return c;
}

OJson EvalSummary::to_json() const {
  OJson j;
  j["model"] = model;
  j["device"] = device;
  j["max_new_tokens"] = max_new_tokens;
  j["cells"] = OJson::array();
  for (const CellSummary& c : cells) j["cells"].push_back(c.to_json());
  return j;
}

EvalSummary EvalSummary::from_json(const Json& j) {
  check(j.is_object() && j.contains("cells") && j["cells"].is_array(),
        "not an eval summary (no \"cells\" list)");
  EvalSummary s;
  s.model = j.value("model", "");
  s.device = j.value("device", "");
  s.max_new_tokens = j.value("max_new_tokens", 0);
  for (const Json& c : j["cells"]) s.cells.push_back(CellSummary::from_json(c));
  return s;
}

std::vector<Json> read_cell_rows(const std::string& path) {
  std::vector<Json> rows;
  std::ifstream in(path, std::ios::binary);
  if (!in) return rows;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  size_t start = 0, good_end = 0;
  bool torn = false;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    const bool complete = nl != std::string::npos;
    const std::string line = text.substr(start, complete ? nl - start : std::string::npos);
    Json row = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!complete || row.is_discarded() || !row.is_object()) {
      // Only the last line may be torn (killed mid-write); anything else is a foreign file.
      check(!complete || line.find_first_not_of(" \t\r") == std::string::npos ||
                text.find_first_not_of(" \t\r\n", nl) == std::string::npos,
            "{}: line {} is not a result row; remove the file or use another --out", path,
            rows.size() + 1);
      if (line.find_first_not_of(" \t\r") != std::string::npos) torn = true;
      break;
    }
    rows.push_back(std::move(row));
    good_end = nl + 1;
    start = nl + 1;
  }
  if (torn) fs::resize_file(path, good_end);  // the next append starts on a clean line
  return rows;
}

std::string format_summary_table(const EvalSummary& summary) {
  auto fmt_num = [](double v, int digits) {
    return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : std::string("-");
  };
  auto fmt_bytes = [](double v) {
    if (!std::isfinite(v)) return std::string("-");
    if (v >= 10 * 1048576.0) return fmt::format("{:.1f} MiB", v / 1048576.0);
    if (v >= 10 * 1024.0) return fmt::format("{:.1f} KiB", v / 1024.0);
    return fmt::format("{:.0f} B", v);
  };
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"task", "length", "method", "score", "fidelity", "samples", "skipped",
                  "GPU KV/token", "of dense", "CPU KV/token", "PCIe/step", "decode tok/s"});
  bool any_excluded = false;
  for (const CellSummary& c : summary.cells) {
    any_excluded |= c.excluded > 0;
    const double dps = c.decode_seconds > 0 ? double(c.decode_tokens) / c.decode_seconds : nan();
    const double pcie = c.ran() > 0 ? c.pcie_bytes_per_step / double(c.ran()) : nan();
    std::string samples = std::to_string(c.ran());
    if (c.excluded > 0) samples += fmt::format(" ({} excl)", c.excluded);
    rows.push_back({c.task, c.length, c.knobs.empty() ? c.method : c.method + " " + c.knobs,
                    fmt_num(c.score(), 1), fmt_num(c.fidelity(), 1), samples,
                    c.skipped > 0 ? fmt::format("{} too long", c.skipped) : "0",
                    fmt_bytes(c.gpu_bytes_per_token()), fmt_num(c.fraction_of_dense(), 3),
                    fmt_bytes(c.cpu_bytes_per_token()), fmt_bytes(pcie), fmt_num(dps, 1)});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (size_t i = 0; i < rows[r].size(); ++i) {
      const bool left = i < 3;
      const std::string& cell = rows[r][i];
      const std::string pad(width[i] - cell.size(), ' ');
      line += (i ? "  " : "") + (left ? cell + pad : pad + cell);
    }
    out += line.substr(0, line.find_last_not_of(' ') + 1) + "\n";
    if (r == 0) out += std::string(line.size(), '-') + "\n";
  }
  out +=
      "score: 100 x mean per-sample score; fidelity: 100 x agreement with dense on the same "
      "sample;\nKV/token: bytes per token of KV capacity (prompt + generation limit); of dense: "
      "GPU KV bytes / dense's;\nPCIe/step: host -> GPU bytes of a decode step (mean over the "
      "samples' steps);\nskipped: prompt + answer do not fit the model's context.\n";
  if (any_excluded)
    out += "excl: Text2JSON samples with duplicate gold names, left out of the score.\n";
  return out;
}

}  // namespace kvo
