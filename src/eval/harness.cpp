#include "eval/harness.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "engine/generator.h"
#include "eval/score.h"
#include "eval/tasks.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"
#include "util/progress.h"
#include "util/text.h"

namespace kvo {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::json;
using OJson = nlohmann::ordered_json;

constexpr const char* kDense = "dense";

std::string length_label(int64_t tokens) {
  return fmt::format("{}k", tokens / 1024);
}

std::string shipped_path(const std::string& data_dir, const std::string& task,
                         const std::string& length) {
  const std::string sub = task == "text2json" ? "text2json" : "tasks";
  return (fs::path(data_dir) / sub / (task + "-" + length + ".jsonl")).string();
}

// A stable short hash (FNV-1a) for file names that had to be sanitized.
std::string short_hash(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:08x}", uint32_t(h ^ (h >> 32)));
}

double nan() {
  return std::nan("");
}

OJson number_or_null(double v) {
  return std::isfinite(v) ? OJson(v) : OJson(nullptr);
}

}  // namespace

// ---- KV methods and knob sweeps ---------------------------------------------------------

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
  const bool has_dense = std::find(order.begin(), order.end(), kDense) != order.end();
  if (has_dense || add_dense) {
    order.erase(std::remove(order.begin(), order.end(), kDense), order.end());
    order.insert(order.begin(), kDense);
  }
  for (const KnobSweep& k : knobs) {
    if (k.method.empty()) continue;
    check(k.method != kDense, "--{}:{}: dense is the exact reference and takes no knobs", k.method,
          k.name);
    check(std::find(order.begin(), order.end(), k.method) != order.end(),
          "--{}:{}: method '{}' is not in --kv", k.method, k.name, k.method);
  }
  auto applies_to = [&](const std::string& m, const KnobSweep& k) {
    if (m == kDense) return false;
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
    if (m == kDense) {
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

// ---- Datasets ----------------------------------------------------------------------------

std::string default_data_dir() {
  std::vector<fs::path> candidates;
  if (const char* d = std::getenv("KVOFFLOAD_DATA_DIR"); d && *d) candidates.emplace_back(d);
#ifdef KVO_SOURCE_DIR
  candidates.push_back(fs::path(KVO_SOURCE_DIR) / "data");
#endif
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path dir = exe.parent_path(); dir.has_relative_path(); dir = dir.parent_path())
      candidates.push_back(dir / "data");
  }
  candidates.push_back("data");
  for (const fs::path& p : candidates) {
    if (fs::is_directory(p / "text2json", ec) || fs::is_directory(p / "tasks", ec))
      return fs::weakly_canonical(p, ec).string();
  }
  fail("cannot find the shipped data sets (data/text2json, data/tasks); pass --data-dir DIR");
}

std::vector<std::string> shipped_tasks() {
  std::vector<std::string> names{"text2json"};
  for (const TaskInfo& t : contrast_tasks()) names.push_back(t.name);
  return names;
}

std::vector<int64_t> shipped_lengths(const std::string& data_dir, const std::string& task) {
  const fs::path dir = fs::path(data_dir) / (task == "text2json" ? "text2json" : "tasks");
  std::vector<int64_t> lengths;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return lengths;
  const std::regex re(task + "-([0-9]+)k\\.jsonl");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, re)) lengths.push_back(std::stoll(m[1].str()) * 1024);
  }
  std::sort(lengths.begin(), lengths.end());
  return lengths;
}

std::vector<EvalDataset> resolve_datasets(const std::vector<std::string>& tasks,
                                          const std::vector<int64_t>& lengths,
                                          const std::string& data_dir) {
  const std::vector<std::string> known = shipped_tasks();
  std::vector<EvalDataset> out;
  for (const std::string& raw : tasks) {
    const std::string task = trim(raw);
    check(std::find(known.begin(), known.end(), task) != known.end(),
          "unknown task '{}' (available: {}; or --data FILE for your own JSONL)", task,
          join(known, ", "));
    const std::vector<int64_t> have = shipped_lengths(data_dir, task);
    std::vector<std::string> have_labels;
    for (int64_t n : have) have_labels.push_back(length_label(n));
    check(!have.empty(), "no shipped sets for task '{}' in {}", task, data_dir);
    for (int64_t n : lengths.empty() ? have : lengths) {
      check(n % 1024 == 0 && std::find(have.begin(), have.end(), n) != have.end(),
            "no shipped {} set of {} tokens (shipped: {}); --data FILE runs your own", task, n,
            join(have_labels, ", "));
      const std::string label = length_label(n);
      out.push_back({task, label, shipped_path(data_dir, task, label)});
    }
  }
  return out;
}

EvalDataset user_dataset(const std::string& path) {
  std::error_code ec;
  check(fs::is_regular_file(path, ec), "--data {}: no such file", path);
  std::string stem = fs::path(path).stem().string();
  for (char& c : stem) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  }
  return {stem, "all", path};
}

int task_generation_limit(const std::string& task) {
  static const std::map<std::string, int> limits = {
      {"text2json", 1024},       {"niah_multikey", 128}, {"niah_multivalue", 128},
      {"variable_tracking", 64}, {"frequent_words", 64}, {"json_kv", 128}};
  auto it = limits.find(task);
  return it == limits.end() ? 256 : it->second;
}

// ---- Cells and summaries -----------------------------------------------------------------

std::string EvalCell::id() const {
  const std::string k = spec.knob_string();
  return dataset.task + "/" + dataset.length + "/" + spec.method + (k.empty() ? "" : "/" + k);
}

std::string EvalCell::file_name() const {
  std::string name = id();
  bool changed = false;
  for (char& c : name) {
    if (c == '/') {
      c = '.';
    } else if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
               c != '=' && c != ',' && c != '+') {
      c = '_';
      changed = true;
    }
  }
  if (name.size() > 180) {
    name.resize(180);
    changed = true;
  }
  if (changed) name += "." + short_hash(id());
  return name + ".jsonl";
}

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

// ---- Running -----------------------------------------------------------------------------

namespace {

struct LoadedSample {
  JsonlRow row;
  std::string id;
  std::string task;  // the scorer's task (sample_task)
  // Filled on first use.
  bool prepared = false;
  std::vector<int32_t> prompt;
  int answer_tokens = 0;  // tokens of the gold answer (0 = unknown)
};

struct LoadedDataset {
  EvalDataset info;
  std::vector<LoadedSample> samples;
};

LoadedDataset load_dataset(const EvalDataset& d, size_t limit) {
  LoadedDataset out{d, {}};
  std::vector<JsonlRow> rows = read_jsonl(d.path);
  check(!rows.empty(), "{}: no samples", d.path);
  std::set<std::string> seen;
  for (JsonlRow& r : rows) {
    if (limit > 0 && out.samples.size() >= limit) break;
    LoadedSample s;
    auto id = r.value.find("id");
    s.id = id != r.value.end() && id->is_string() ? id->get<std::string>()
                                                  : fmt::format("line-{}", r.line);
    check(seen.insert(s.id).second, "{}: sample id '{}' appears twice", r.where(), s.id);
    s.task = sample_task(r.value);
    jsonl_string(r, "problem");  // fail early on rows without a prompt
    s.row = std::move(r);
    out.samples.push_back(std::move(s));
  }
  return out;
}

void prepare(LoadedSample& s, const Model& model) {
  if (s.prepared) return;
  s.prepared = true;
  const std::string text =
      render_chat(model.chat_format, {{"user", jsonl_string(s.row, "problem")}});
  s.prompt = model.tokenizer.encode(text);
  const Json& v = s.row.value;
  if (auto a = v.find("answer"); a != v.end() && a->is_string()) {
    s.answer_tokens = int(model.tokenizer.encode(a->get<std::string>()).size());
  } else if (auto as = v.find("answers"); as != v.end() && as->is_array()) {
    std::string joined;
    for (const Json& x : *as) {
      if (x.is_string()) joined += (joined.empty() ? "" : ", ") + x.get<std::string>();
    }
    s.answer_tokens = int(model.tokenizer.encode(joined).size());
  }
}

// Appends rows to a cell file, one flushed line each, so a kill loses at most one row.
class RowWriter {
 public:
  explicit RowWriter(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "ab");
    check(file_ != nullptr, "cannot write {}", path);
  }
  ~RowWriter() {
    if (file_) std::fclose(file_);
  }
  void write(const OJson& row) {
    const std::string line = row.dump(-1, ' ', false, OJson::error_handler_t::replace) + "\n";
    check(std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0,
          "writing {} failed", path_);
  }

 private:
  std::string path_;
  FILE* file_ = nullptr;
};

std::string row_string(const Json& row, const char* key) {
  auto it = row.find(key);
  return it != row.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Outputs of a cell's rows by sample id (skipped rows left out).
std::map<std::string, const Json*> by_id(const std::vector<Json>& rows) {
  std::map<std::string, const Json*> out;
  for (const Json& r : rows) {
    if (!r.value("skipped", false)) out[row_string(r, "sample_id")] = &r;
  }
  return out;
}

int64_t row_int(const Json& r, const char* key) {
  auto it = r.find(key);
  return it != r.end() && it->is_number() ? it->get<int64_t>() : 0;
}
double row_double(const Json& r, const char* key) {
  auto it = r.find(key);
  return it != r.end() && it->is_number() ? it->get<double>() : 0.0;
}

CellSummary summarize_cell(const EvalCell& cell, const LoadedDataset& data,
                           const std::vector<Json>& rows, const std::vector<Json>* dense_rows) {
  CellSummary c;
  c.id = cell.id();
  c.task = cell.dataset.task;
  c.length = cell.dataset.length;
  c.method = cell.spec.method;
  c.knobs = cell.spec.knob_string();
  c.knob_values = cell.spec.knobs;
  std::map<std::string, const Json*> mine;
  for (const Json& r : rows) mine[row_string(r, "sample_id")] = &r;
  std::map<std::string, const Json*> dense;
  if (dense_rows) dense = by_id(*dense_rows);
  for (const LoadedSample& s : data.samples) {
    auto it = mine.find(s.id);
    if (it == mine.end()) continue;  // not run (yet)
    const Json& r = *it->second;
    ++c.rows;
    if (r.value("skipped", false)) {
      ++c.skipped;
      continue;
    }
    if (r.value("excluded", false)) {
      ++c.excluded;
    } else {
      ++c.scored;
      c.score_sum += row_double(r, "score");
    }
    c.prompt_tokens += row_int(r, "prompt_tokens");
    c.output_tokens += row_int(r, "output_tokens");
    c.kv_capacity += row_int(r, "kv_capacity");
    c.gpu_bytes += row_double(r, "kv_gpu_bytes");
    c.cpu_bytes += row_double(r, "kv_cpu_bytes");
    c.pcie_bytes_per_step += row_double(r, "kv_pcie_bytes_per_step");
    c.prefill_seconds += row_double(r, "prefill_seconds");
    c.decode_seconds += row_double(r, "decode_seconds");
    c.decode_tokens += std::max<int64_t>(0, row_int(r, "output_tokens") - 1);
    auto d = dense.find(s.id);
    if (d != dense.end()) {
      ++c.fidelity_n;
      c.fidelity_sum += agreement_score(s.task, s.row.value, row_string(*d->second, "output"),
                                        row_string(r, "output"));
      c.paired_gpu_bytes += row_double(r, "kv_gpu_bytes");
      c.paired_dense_gpu_bytes += row_double(*d->second, "kv_gpu_bytes");
    }
  }
  return c;
}

std::string format_seconds(double s) {
  if (s < 60) return fmt::format("{:.1f}s", s);
  return fmt::format("{}m{:02d}s", int(s) / 60, int(s) % 60);
}

}  // namespace

EvalSummary run_eval(const std::vector<EvalDataset>& datasets,
                     const std::vector<KvMethodSpec>& specs, const EvalOptions& options,
                     EvalEngine& engine) {
  check(engine.model && engine.transformer && engine.make_policy, "eval: engine not set up");
  check(!datasets.empty(), "no task to run: give --task or --data");
  check(!specs.empty(), "no KV method to run");
  check(!options.out_dir.empty(), "--out DIR is required");
  check(options.max_new_tokens >= 0, "--max-new-tokens must be >= 0");
  fs::create_directories(options.out_dir);
  const Model& model = *engine.model;
  const int64_t context = model.config.max_context;

  std::vector<LoadedDataset> data;
  for (const EvalDataset& d : datasets) data.push_back(load_dataset(d, options.limit));

  // Work still to do, from what the cell files already hold.
  struct CellWork {
    EvalCell cell;
    size_t dataset = 0;
    std::string path;
    std::set<std::string> done;
  };
  std::vector<CellWork> work;
  int64_t total = 0, resumed = 0;
  bool warned_budget = false;
  for (size_t d = 0; d < data.size(); ++d) {
    for (const KvMethodSpec& spec : specs) {
      CellWork w{{data[d].info, spec}, d, "", {}};
      w.path = (fs::path(options.out_dir) / w.cell.file_name()).string();
      for (const Json& r : read_cell_rows(w.path)) {
        w.done.insert(row_string(r, "sample_id"));
        if (!warned_budget && row_int(r, "max_new_tokens_requested") != options.max_new_tokens) {
          warned_budget = true;
          std::fprintf(stderr,
                       "warning: %s holds rows made with another --max-new-tokens; they are "
                       "kept (use a new --out to rerun)\n",
                       options.out_dir.c_str());
        }
      }
      for (const LoadedSample& s : data[d].samples) {
        if (w.done.count(s.id)) {
          ++resumed;
        } else {
          ++total;
        }
      }
      work.push_back(std::move(w));
    }
  }
  if (!options.quiet) {
    std::fprintf(
        stderr, "eval: %zu cells, %lld samples to run%s\n", work.size(),
        static_cast<long long>(total),
        resumed ? fmt::format(" ({} already in {})", resumed, options.out_dir).c_str() : "");
  }

  const bool tty = ProgressBar::enabled();
  ProgressBar bar("eval", total, "samples");
  int64_t done_count = 0;
  GenerationOptions gen;
  gen.stop_ids = engine.stop_ids;
  gen.prefill_progress = false;  // the eval bar covers the whole run
  for (size_t wi = 0; wi < work.size(); ++wi) {
    CellWork& w = work[wi];
    LoadedDataset& ds = data[w.dataset];
    const bool is_dense = w.cell.spec.method == kDense && w.cell.spec.knobs.empty();
    // The dense rows of this dataset, for per-row fidelity (dense runs before the others).
    std::vector<Json> dense_rows;
    if (!is_dense) {
      const EvalCell dense_cell{ds.info, {kDense, {}}};
      dense_rows = read_cell_rows((fs::path(options.out_dir) / dense_cell.file_name()).string());
    }
    const auto dense = by_id(dense_rows);
    const auto t0 = std::chrono::steady_clock::now();
    int ran = 0, skipped = 0;
    RowWriter writer(w.path);
    for (LoadedSample& s : ds.samples) {
      if (w.done.count(s.id)) continue;
      prepare(s, model);
      const int budget = options.max_new_tokens > 0
                             ? std::min(options.max_new_tokens, task_generation_limit(s.task))
                             : task_generation_limit(s.task);
      const int64_t prompt_n = int64_t(s.prompt.size());
      // Skip when the gold answer (plus a margin) cannot follow the prompt in the context.
      const int64_t needed =
          s.answer_tokens > 0 ? std::min<int64_t>(budget, s.answer_tokens + 16) : budget;
      OJson row;
      row["cell"] = w.cell.id();
      row["sample_id"] = s.id;
      row["task"] = ds.info.task;
      if (s.task != ds.info.task) row["scored_as"] = s.task;
      row["length"] = ds.info.length;
      row["method"] = w.cell.spec.method;
      row["knobs"] = OJson::object();
      for (const auto& [k, v] : w.cell.spec.knobs) row["knobs"][k] = v;
      row["prompt_tokens"] = prompt_n;
      row["max_new_tokens_requested"] = options.max_new_tokens;
      if (prompt_n + needed > context) {
        row["skipped"] = true;
        row["skip_reason"] =
            fmt::format("too long: {} prompt tokens + {} for the answer > {}-token context",
                        prompt_n, needed, context);
        writer.write(row);
        ++skipped;
      } else {
        const int limit = int(std::min<int64_t>(budget, context - prompt_n));
        gen.max_new_tokens = limit;
        std::unique_ptr<KvPolicy> kv = engine.make_policy(w.cell.spec, prompt_n + limit);
        GenerationResult r = generate(*engine.transformer, model.tokenizer, *kv, s.prompt, gen);
        const SampleScore sc = score_sample(s.task, s.row.value, r.text, s.row.where());
        row["skipped"] = false;
        row["output"] = r.text;
        row["score"] = sc.score;
        row["excluded"] = sc.excluded;
        if (is_dense) {
          row["fidelity"] = 1.0;
        } else if (auto d = dense.find(s.id); d != dense.end()) {
          row["fidelity"] =
              agreement_score(s.task, s.row.value, row_string(*d->second, "output"), r.text);
        } else {
          row["fidelity"] = nullptr;
        }
        row["output_tokens"] = r.tokens.size();
        row["max_new_tokens"] = limit;
        row["stop_reason"] = r.stop_reason;
        row["prefill_seconds"] = r.prefill_seconds;
        row["decode_seconds"] = r.decode_seconds;
        row["kv"] = kv->name();
        row["kv_tokens"] = r.kv.tokens;
        row["kv_capacity"] = kv->capacity();
        row["kv_gpu_bytes"] = r.kv.gpu_bytes;
        row["kv_cpu_bytes"] = r.kv.cpu_bytes;
        row["kv_pcie_bytes_per_step"] = r.kv.pcie_bytes_per_step;
        writer.write(row);
        ++ran;
      }
      bar.update(++done_count);
    }
    if (!options.quiet && (ran > 0 || skipped > 0)) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::string line =
          fmt::format("[{}/{}] {}: {} run, {} skipped (too long), {} resumed, {}", wi + 1,
                      work.size(), w.cell.id(), ran, skipped, w.done.size(), format_seconds(secs));
      std::fprintf(stderr, "%s%s\n", tty ? "\r\033[K" : "", line.c_str());
    }
  }
  bar.finish();

  EvalSummary summary;
  summary.model = model.path;
  summary.device = engine.device;
  summary.max_new_tokens = options.max_new_tokens;
  for (const CellWork& w : work) {
    const LoadedDataset& ds = data[w.dataset];
    const EvalCell dense_cell{ds.info, {kDense, {}}};
    const std::string dense_path = (fs::path(options.out_dir) / dense_cell.file_name()).string();
    std::vector<Json> dense_rows = read_cell_rows(dense_path);
    summary.cells.push_back(summarize_cell(w.cell, ds, read_cell_rows(w.path),
                                           dense_rows.empty() ? nullptr : &dense_rows));
  }
  const std::string path = (fs::path(options.out_dir) / "summary.json").string();
  {
    std::ofstream out(path + ".tmp", std::ios::binary | std::ios::trunc);
    check(bool(out), "cannot write {}", path);
    out << summary.to_json().dump(2, ' ', false, OJson::error_handler_t::replace) << "\n";
    check(bool(out), "writing {} failed", path);
  }
  fs::rename(path + ".tmp", path);
  return summary;
}

}  // namespace kvo
