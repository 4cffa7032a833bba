#include "eval/harness.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "engine/generator.h"
#include "eval/jsonl.h"
#include "eval/score.h"
#include "eval/tasks.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"
#include "util/progress.h"

namespace kvo {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::json;
using OJson = nlohmann::ordered_json;

// A stable short hash (FNV-1a) for file names that had to be sanitized.
std::string short_hash(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:08x}", uint32_t(h ^ (h >> 32)));
}

}  // namespace

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
  if (changed) name += '.' + short_hash(id());
  return name + ".jsonl";
}

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
    const bool is_dense = w.cell.spec.method == kDenseMethod && w.cell.spec.knobs.empty();
    // The dense rows of this dataset, for per-row fidelity (dense runs before the others).
    std::vector<Json> dense_rows;
    if (!is_dense) {
      const EvalCell dense_cell{ds.info, {kDenseMethod, {}}};
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
    const EvalCell dense_cell{ds.info, {kDenseMethod, {}}};
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
