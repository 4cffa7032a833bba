// `kvoffload info PATH [--json]`: what a model file is, read from metadata and headers only
// (nothing is dequantized), so it is instant even for large checkpoints.
// `kvoffload info (PATH | --random-weights CONFIG) --kv METHOD [knobs] [--context N] [--json]`
// adds the KV accounting of that policy for a prompt of N tokens (default: the model's context):
// GPU bytes per prompt token, CPU bytes per token, PCIe bytes per decode step and GPU KV bytes
// as a fraction of dense, from plan_kv_layout (kv/kv_layout.h), the function the policies size
// their allocations with, at the CUDA layout's 2 bytes per exact value (bf16).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kv/kv_layout.h"
#include "model/weights.h"
#include "util/error.h"
#include "util/text.h"

namespace kvo::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

struct Summary {
  std::string format;
  int format_version = 0;
  ModelConfig config;
  int64_t parameters = 0;
  std::map<std::string, int64_t> dtypes;  // dtype name -> number of tensors
};

bool has_gguf_magic(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char magic[4] = {};
  size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  return n == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

Summary summarize(const std::string& path) {
  Summary s;
  std::error_code ec;
  check(fs::exists(path, ec), "{}: no such file or directory", path);
  if (fs::is_directory(path, ec)) {
    s.format = "safetensors";
    s.config = load_hf_config(path);
    SafetensorsArchive archive = SafetensorsArchive::open(path);
    for (const auto& [name, t] : archive.tensors()) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      s.parameters += n;
      ++s.dtypes[t.dtype];
    }
    return s;
  }
  if (!has_gguf_magic(path)) {
    check(fs::path(path).extension() != ".safetensors",
          "{}: a safetensors file alone has no config.json; pass the checkpoint folder", path);
    fail("{}: not a GGUF file or an HF checkpoint folder", path);
  }
  GgufFile g = GgufFile::open(path);
  s.format = "gguf";
  s.format_version = int(g.version());
  s.config = gguf_model_config(g);
  for (const GgufTensorInfo& t : g.tensors()) {
    s.parameters += t.numel();
    ++s.dtypes[ggml_type_name(t.type)];
  }
  return s;
}

// A model described by an HF config.json alone (a file, or a folder holding one).
Summary summarize_config(const std::string& path) {
  Summary s;
  s.format = "random-weights";
  s.config = load_hf_config_file(path);
  const ModelConfig& c = s.config;
  const int64_t hd = c.hidden_size, q = int64_t(c.num_heads) * c.head_dim,
                kv = int64_t(c.num_kv_heads) * c.head_dim;
  int64_t layer = hd * q * 2 + hd * kv * 2 + 3 * hd * int64_t(c.intermediate_size) + 2 * hd;
  if (c.qkv_bias) layer += q + 2 * kv;
  if (c.qk_norm) layer += 2 * c.head_dim;
  s.parameters =
      int64_t(c.vocab_size) * hd * (c.tie_word_embeddings ? 1 : 2) + hd + layer * c.num_layers;
  return s;
}

const char* layout_name(RopeLayout l) {
  return l == RopeLayout::RotateHalf ? "rotate-half" : "adjacent-pairs";
}

// Config floats are stored as float; printing their shortest decimal form keeps 1e-5 from
// turning into 9.999999747378752e-06 when widened to double for JSON.
double shortest(float f) {
  return std::stod(fmt::format("{}", f));
}

json to_json(const Summary& s) {
  const ModelConfig& c = s.config;
  json rope = {{"theta", shortest(c.rope_theta)}, {"layout", layout_name(c.rope_layout)}};
  if (c.rope_scaling.type == RopeScaling::Type::Llama3) {
    rope["scaling"] = {{"type", "llama3"},
                       {"factor", shortest(c.rope_scaling.factor)},
                       {"low_freq_factor", shortest(c.rope_scaling.low_freq_factor)},
                       {"high_freq_factor", shortest(c.rope_scaling.high_freq_factor)},
                       {"original_max_position_embeddings", c.rope_scaling.original_max_position}};
  } else if (!c.rope_freq_factors.empty()) {
    rope["scaling"] = {{"type", "freq_factors"}, {"count", c.rope_freq_factors.size()}};
  } else {
    rope["scaling"] = {{"type", "none"}};
  }
  json j;
  j["format"] = s.format;
  if (s.format_version) j["format_version"] = s.format_version;
  j["architecture"] = arch_name(c.arch);
  j["arch_name"] = c.arch_name;
  j["layers"] = c.num_layers;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_heads"] = c.num_heads;
  j["num_kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["context_length"] = c.max_context;
  j["parameters"] = s.parameters;
  j["dtypes"] = s.dtypes;
  j["rope"] = rope;
  j["tied_embeddings"] = c.tie_word_embeddings;
  j["qkv_bias"] = c.qkv_bias;
  j["qk_norm"] = c.qk_norm;
  j["rms_norm_eps"] = shortest(c.rms_norm_eps);
  j["bos_id"] = c.bos_id;
  j["eos_ids"] = c.eos_ids;
  j["kv_bytes_per_token_bf16"] = c.kv_bytes_per_token(2);
  return j;
}

void print_text(const Summary& s) {
  const ModelConfig& c = s.config;
  std::string format = s.format;
  if (s.format_version) format += fmt::format(" (version {})", s.format_version);
  std::string dtypes;
  for (const auto& [name, n] : s.dtypes)
    dtypes += fmt::format("{}{} x{}", dtypes.empty() ? "" : ", ", name, n);
  std::string scaling = "none";
  if (c.rope_scaling.type == RopeScaling::Type::Llama3) {
    scaling =
        fmt::format("llama3 (factor {}, low_freq_factor {}, high_freq_factor {}, original {})",
                    c.rope_scaling.factor, c.rope_scaling.low_freq_factor,
                    c.rope_scaling.high_freq_factor, c.rope_scaling.original_max_position);
  } else if (!c.rope_freq_factors.empty()) {
    scaling = fmt::format("per-frequency factors ({} from rope_freqs)", c.rope_freq_factors.size());
  }
  std::string eos;
  for (int id : c.eos_ids) eos += fmt::format("{}{}", eos.empty() ? "" : ", ", id);
  int64_t kv = c.kv_bytes_per_token(2);

  fmt::print("format:            {}\n", format);
  fmt::print("architecture:      {} ({})\n", arch_name(c.arch), c.arch_name);
  fmt::print("layers:            {}\n", c.num_layers);
  fmt::print("hidden size:       {}\n", c.hidden_size);
  fmt::print("intermediate size: {}\n", c.intermediate_size);
  fmt::print("attention:         {} heads, {} kv heads, head_dim {}{}{}\n", c.num_heads,
             c.num_kv_heads, c.head_dim, c.qkv_bias ? ", qkv bias" : "",
             c.qk_norm ? ", q/k norm" : "");
  fmt::print("vocab size:        {}\n", c.vocab_size);
  fmt::print("context length:    {}\n", c.max_context);
  fmt::print("parameters:        {} ({:.1f}M)\n", s.parameters, s.parameters / 1e6);
  fmt::print("weight dtypes:     {}\n", dtypes);
  fmt::print("rope:              theta {}, scaling {}, layout {}\n", c.rope_theta, scaling,
             layout_name(c.rope_layout));
  fmt::print("tied embeddings:   {}\n", c.tie_word_embeddings ? "yes" : "no");
  fmt::print("special tokens:    bos {}, eos [{}]\n", c.bos_id, eos);
  fmt::print("KV cache (bf16):   {} bytes per token ({}; {} at the full context)\n", kv,
             human_bytes(double(kv)), human_bytes(double(kv) * c.max_context));
}

struct KvInfo {
  KvSpec spec;
  KvLayout layout;
  int64_t context = 0;
};

void add_kv_json(json& j, const KvInfo& k) {
  const KvLayout& l = k.layout;
  const double T = double(std::max<int64_t>(1, k.context));
  j["kv_method"] = k.spec.method;
  j["kv_spec"] = k.spec.to_string();
  j["context_tokens"] = k.context;
  j["gpu_bytes_per_prompt_token"] = double(l.gpu_bytes()) / T;
  j["cpu_bytes_per_token"] = double(l.cpu_bytes()) / T;
  j["pcie_bytes_per_step"] = l.pcie_bytes_per_step;
  j["gpu_kv_bytes"] = l.gpu_bytes();
  j["cpu_kv_bytes"] = l.cpu_bytes();
  j["dense_gpu_kv_bytes"] = l.dense_gpu_bytes;
  j["gpu_kv_fraction_of_dense"] = l.gpu_fraction_of_dense();
  json items = json::object(), cpu = json::object();
  for (const auto& i : l.gpu) items[i.name] = i.bytes;
  for (const auto& i : l.cpu) cpu[i.name] = i.bytes;
  j["kv_layout"] = {{"gpu_bytes", items},
                    {"cpu_bytes", cpu},
                    {"chunk", l.chunk},
                    {"sink_end", l.sink_end},
                    {"local_start", l.local_start},
                    {"middle_chunks", l.middle_chunks},
                    {"outlier_chunks", l.outlier_chunks},
                    {"landmark_chunks", l.landmark_chunks},
                    {"selected_chunks", l.selected_chunks},
                    {"rank", l.rank},
                    {"store_record_bytes", l.store_record_bytes},
                    {"store_record_spans_heads", l.store_spans_heads}};
}

void print_kv_text(const KvInfo& k) {
  const KvLayout& l = k.layout;
  const double T = double(std::max<int64_t>(1, k.context));
  fmt::print("KV policy:         {} at {} prompt tokens (bf16 device layout)\n", k.spec.to_string(),
             k.context);
  fmt::print("  GPU bytes/token: {:.1f} ({} total)\n", double(l.gpu_bytes()) / T,
             human_bytes(double(l.gpu_bytes())));
  for (const auto& i : l.gpu)
    if (i.bytes) fmt::print("    {:<16} {}\n", i.name, human_bytes(double(i.bytes)));
  fmt::print("  CPU bytes/token: {:.1f} ({} total)\n", double(l.cpu_bytes()) / T,
             human_bytes(double(l.cpu_bytes())));
  for (const auto& i : l.cpu)
    if (i.bytes) fmt::print("    {:<16} {}\n", i.name, human_bytes(double(i.bytes)));
  fmt::print("  PCIe bytes/step: {} ({})\n", l.pcie_bytes_per_step,
             human_bytes(double(l.pcie_bytes_per_step)));
  fmt::print("  GPU KV / dense:  {:.4f}\n", l.gpu_fraction_of_dense());
}

std::function<void()> make_info(CLI::App& app) {
  auto* sub = app.add_subcommand("info", "Describe a model: architecture, sizes, dtypes, KV bytes");
  auto path = std::make_shared<std::string>();
  auto random_config = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto kv_method = std::make_shared<std::string>();
  auto kv_knobs = std::make_shared<std::map<std::string, std::string>>();
  auto context = std::make_shared<int64_t>(0);
  auto* path_opt = sub->add_option("path", *path, "GGUF file or HF checkpoint folder");
  add_random_weights_option(*sub, *random_config, path_opt);
  sub->add_flag("--json", *as_json, "Print one JSON object instead of text");
  add_kv_options(*sub, *kv_method, *kv_knobs);
  sub->add_option("--context", *context,
                  "With --kv: prompt tokens to account for (default: the model's context)");
  return [=] {
    check(!path->empty() || !random_config->empty(),
          "info needs a model PATH or --random-weights CONFIG");
    Summary s = random_config->empty() ? summarize(*path) : summarize_config(*random_config);
    std::optional<KvInfo> kv;
    if (!kv_method->empty()) {
      KvInfo k;
      k.spec = kv_spec_from_flags(*kv_method, *kv_knobs);
      k.context = *context > 0 ? *context : s.config.max_context;
      check(*context >= 0, "--context must be > 0");
      check(k.context > 0, "--context: the model has no context length; pass --context N");
      k.layout = plan_kv_layout(k.spec, s.config, k.context, k.context, 2);
      kv = k;
    } else {
      bool knob = *context > 0;
      for (const auto& [n, v] : *kv_knobs) knob = knob || !v.empty();
      check(!knob, "KV knobs and --context need --kv METHOD");
    }
    if (*as_json) {
      json j = to_json(s);
      if (kv) add_kv_json(j, *kv);
      std::printf("%s\n", j.dump().c_str());
    } else {
      print_text(s);
      if (kv) print_kv_text(*kv);
    }
  };
}

}  // namespace
KVO_REGISTER_COMMAND("info", make_info);
}  // namespace kvo::cli
