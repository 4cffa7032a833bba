#include "eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "util/error.h"

namespace kvo {
namespace fs = std::filesystem;
namespace {

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// ---- A small SVG scatter/line plot ----------------------------------------------------------

enum class Scale { Linear, Log10, Log2 };

struct Axis {
  std::string title;
  Scale scale = Scale::Linear;
  double lo = 0, hi = 1;
  std::vector<std::pair<double, std::string>> ticks;

  double t(double v) const {
    switch (scale) {
      case Scale::Log10:
        return std::log10(v);
      case Scale::Log2:
        return std::log2(v);
      default:
        return v;
    }
  }
  double frac(double v) const { return (t(v) - t(lo)) / (t(hi) - t(lo)); }
};

struct Point {
  double x = 0, y = 0;
  std::string label, tip;
};

struct Series {
  std::string name, color, dash;
  std::vector<Point> points;
  double dodge = 0;  // horizontal pixel shift, so series at the same x stay apart
  int shape = 0;     // marker: circle, square, triangle, diamond, triangle down
};

// One marker centred at (x, y); shapes differ so coinciding points of two series stay visible.
std::string marker(int shape, double x, double y, double r, const std::string& color,
                   const std::string& extra) {
  const std::string style = fmt::format("fill=\"{}\" stroke=\"#fff\" stroke-width=\"0.8\"", color);
  switch (shape % 5) {
    case 1:
      return fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" {}>{}</rect>",
          x - 0.9 * r, y - 0.9 * r, 1.8 * r, 1.8 * r, style, extra);
    case 2:
      return fmt::format(
          "<polygon points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" {}>{}</polygon>", x,
          y - 1.25 * r, x - 1.15 * r, y + 0.8 * r, x + 1.15 * r, y + 0.8 * r, style, extra);
    case 3:
      return fmt::format(
          "<polygon points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" "
          "{}>{}</polygon>",
          x, y - 1.25 * r, x + 1.25 * r, y, x, y + 1.25 * r, x - 1.25 * r, y, style, extra);
    case 4:
      return fmt::format(
          "<polygon points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" {}>{}</polygon>", x,
          y + 1.25 * r, x - 1.15 * r, y - 0.8 * r, x + 1.15 * r, y - 0.8 * r, style, extra);
    default:
      return fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{:.1f}\" {}>{}</circle>", x, y, r,
                         style, extra);
  }
}

std::string tick_text(double v) {
  if (v != 0 && std::fabs(v) < 1e-3) return fmt::format("{:.0e}", v);
  return fmt::format("{:g}", v);
}

double nice_step(double range, int target) {
  const double raw = range / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

void linear_ticks(Axis& a, int target = 5) {
  a.ticks.clear();
  const double step = nice_step(a.hi - a.lo, target);
  for (double v = std::ceil(a.lo / step - 1e-9) * step; v <= a.hi + 1e-9 * step; v += step) {
    a.ticks.emplace_back(std::fabs(v) < 1e-12 ? 0.0 : v, tick_text(std::fabs(v) < 1e-12 ? 0 : v));
  }
}

void log10_ticks(Axis& a) {
  a.ticks.clear();
  for (int d = int(std::floor(std::log10(a.lo))); d <= int(std::ceil(std::log10(a.hi))); ++d) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10.0, d);
      if (v >= a.lo * (1 - 1e-9) && v <= a.hi * (1 + 1e-9)) a.ticks.emplace_back(v, tick_text(v));
    }
  }
}

std::string token_text(double v) {
  if (v >= 1024 && std::fmod(v, 1024) == 0) return fmt::format("{:g}K", v / 1024);
  return fmt::format("{:g}", v);
}

void log2_ticks(Axis& a) {
  a.ticks.clear();
  for (int e = int(std::ceil(std::log2(a.lo))); e <= int(std::floor(std::log2(a.hi))); ++e) {
    const double v = std::pow(2.0, e);
    a.ticks.emplace_back(v, token_text(v));
  }
}

constexpr double kW = 660, kH = 390, kL = 66, kR = 470, kT = 40, kB = 330;

std::string svg_plot(const std::string& title, const Axis& x, const Axis& y,
                     const std::vector<Series>& series) {
  std::ostringstream s;
  auto px = [&](double v) { return kL + x.frac(v) * (kR - kL); };
  auto py = [&](double v) { return kB - y.frac(v) * (kB - kT); };
  s << fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"Helvetica, Arial, sans-serif\" role=\"img\">\n",
      kW, kH, kW, kH);
  s << fmt::format("<title>{}</title>\n", esc(title));
  s << fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>\n", kW, kH);
  s << fmt::format(
      "<text x=\"{}\" y=\"22\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">{}"
      "</text>\n",
      (kL + kR) / 2, esc(title));
  // Grid and ticks.
  for (const auto& [v, text] : x.ticks) {
    const double p = px(v);
    s << fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#e3e3e3\"/>"
        "<line x1=\"{0:.1f}\" y1=\"{2}\" x2=\"{0:.1f}\" y2=\"{3}\" stroke=\"#333\"/>"
        "<text x=\"{0:.1f}\" y=\"{4}\" font-size=\"12\" text-anchor=\"middle\">{5}</text>\n",
        p, kT, kB, kB + 5, kB + 19, esc(text));
  }
  for (const auto& [v, text] : y.ticks) {
    const double p = py(v);
    s << fmt::format(
        "<line x1=\"{0}\" y1=\"{2:.1f}\" x2=\"{1}\" y2=\"{2:.1f}\" stroke=\"#e3e3e3\"/>"
        "<line x1=\"{3}\" y1=\"{2:.1f}\" x2=\"{0}\" y2=\"{2:.1f}\" stroke=\"#333\"/>"
        "<text x=\"{4}\" y=\"{5:.1f}\" font-size=\"12\" text-anchor=\"end\">{6}</text>\n",
        kL, kR, p, kL - 5, kL - 8, p + 4, esc(text));
  }
  s << fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", kL,
      kT, kR - kL, kB - kT);
  s << fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\">{}</text>\n",
                   (kL + kR) / 2, kB + 40, esc(x.title));
  s << fmt::format(
      "<text x=\"16\" y=\"{0}\" font-size=\"13\" text-anchor=\"middle\" "
      "transform=\"rotate(-90 16 {0})\">{1}</text>\n",
      (kT + kB) / 2, esc(y.title));
  // Series: lines, then points with hover titles and labels.
  for (size_t si = 0; si < series.size(); ++si) {
    const Series& se = series[si];
    const double radius = 5.5;
    auto sx = [&](double v) { return px(v) + se.dodge; };
    std::vector<Point> pts = se.points;
    std::sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
    if (pts.size() > 1) {
      std::string path;
      for (const Point& p : pts) path += fmt::format("{:.1f},{:.1f} ", sx(p.x), py(p.y));
      s << fmt::format(
          "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n", path,
          se.color, se.dash.empty() ? "" : " stroke-dasharray=\"" + se.dash + "\"");
    }
    for (size_t pi = 0; pi < pts.size(); ++pi) {
      const Point& p = pts[pi];
      s << marker(se.shape, sx(p.x), py(p.y), radius, se.color, "<title>" + esc(p.tip) + "</title>")
        << "\n";
      if (!p.label.empty()) {  // alternately above and below the line, so neighbours part
        s << fmt::format(
            "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"middle\" "
            "fill=\"{}\">{}</text>\n",
            sx(p.x), py(p.y) + (pi % 2 == 0 ? -11 : 19), se.color, esc(p.label));
      }
    }
  }
  // Legend at the right.
  double ly = kT + 8;
  for (const Series& se : series) {
    std::string name = se.name;
    if (name.size() > 26) name = name.substr(0, 25) + "…";
    s << fmt::format(
        "<g><title>{0}</title><line x1=\"{1}\" y1=\"{2:.1f}\" x2=\"{3}\" y2=\"{2:.1f}\" "
        "stroke=\"{4}\" stroke-width=\"2\"{5}/>{6}<text x=\"{7}\" y=\"{8:.1f}\" "
        "font-size=\"12\">{9}</text></g>\n",
        esc(se.name), kR + 14, ly, kR + 42, se.color,
        se.dash.empty() ? "" : " stroke-dasharray=\"" + se.dash + "\"",
        marker(se.shape, kR + 28, ly, 4.5, se.color, ""), kR + 48, ly + 4, esc(name));
    ly += 19;
  }
  s << "</svg>\n";
  return s.str();
}

// ---- Page ---------------------------------------------------------------------------------

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
const char* const kDashes[] = {"", "6 3", "2 3", "9 3 2 3", "12 4"};

struct Styles {
  std::map<std::string, std::string> color;                         // method -> color
  std::map<std::string, int> shape;                                 // method -> marker
  std::map<std::pair<std::string, std::string>, std::string> dash;  // (method, knobs) -> dash
};

Styles make_styles(const EvalSummary& summary) {
  Styles st;
  size_t next = 0;
  std::map<std::string, size_t> knob_count;
  for (const CellSummary& c : summary.cells) {
    if (!st.color.count(c.method)) {
      st.shape[c.method] = int(st.color.size());
      st.color[c.method] = c.method == "dense" ? "#222222" : kPalette[next++ % 10];
    }
    const auto key = std::make_pair(c.method, c.knobs);
    if (!st.dash.count(key)) st.dash[key] = kDashes[knob_count[c.method]++ % 5];
  }
  return st;
}

std::string cell_label(const std::string& method, const std::string& knobs) {
  return knobs.empty() ? method : method + " " + knobs;
}

std::vector<std::string> tasks_in_order(const EvalSummary& summary) {
  std::vector<std::string> tasks;
  for (const CellSummary& c : summary.cells) {
    if (std::find(tasks.begin(), tasks.end(), c.task) == tasks.end()) tasks.push_back(c.task);
  }
  return tasks;
}

std::string no_data(const std::string& title, const std::string& why) {
  return fmt::format("<div class=\"empty\"><b>{}</b><br>{}</div>\n", esc(title), esc(why));
}

// Score (or fidelity) vs GPU KV fraction of dense for one task, lengths pooled.
std::string memory_plot(const EvalSummary& summary, const Styles& st, const std::string& task,
                        bool fidelity) {
  std::vector<std::pair<std::string, std::string>> order;  // (method, knobs)
  std::map<std::pair<std::string, std::string>, CellSummary> pooled;
  for (const CellSummary& c : summary.cells) {
    if (c.task != task) continue;
    const auto key = std::make_pair(c.method, c.knobs);
    if (!pooled.count(key)) {
      order.push_back(key);
      pooled[key] = c;
    } else {
      pooled[key].add(c);
    }
  }
  // Points are labelled with knob values only; the knob names go into the legend.
  auto names_of = [](const CellSummary& c) {
    std::string names;
    for (const auto& kv : c.knob_values) names += (names.empty() ? "" : ",") + kv.first;
    return names;
  };
  auto values_of = [](const CellSummary& c) {
    if (c.knob_values.empty()) return c.knobs;
    std::string values;
    for (const auto& kv : c.knob_values) {
      values += (values.empty() ? "" : ",") + (kv.second.empty() ? kv.first : kv.second);
    }
    return values;
  };
  std::map<std::string, Series> by_method;
  std::vector<std::string> methods;
  std::vector<double> xs;
  double ymin = 0, ymax = 100;
  for (const auto& key : order) {
    const CellSummary& c = pooled[key];
    const double x = c.fraction_of_dense(), y = fidelity ? c.fidelity() : c.score();
    if (!std::isfinite(x) || !std::isfinite(y) || x <= 0) continue;
    if (!by_method.count(key.first)) {
      methods.push_back(key.first);
      by_method[key.first] = {key.first, st.color.at(key.first), "", {}, 0, st.shape.at(key.first)};
    }
    Series& se = by_method[key.first];
    if (!c.knob_values.empty() && se.name == key.first) se.name += " (" + names_of(c) + ")";
    se.points.push_back({x, y, values_of(c),
                         fmt::format("{}: {} {:.1f}, GPU KV {:.3f} of dense, {} samples",
                                     cell_label(key.first, key.second),
                                     fidelity ? "fidelity" : "score", y, x, c.ran())});
    xs.push_back(x);
    ymin = std::min(ymin, y);
    ymax = std::max(ymax, y);
  }
  const std::string title =
      fmt::format("{}: {} vs GPU KV memory", task, fidelity ? "fidelity" : "score");
  if (xs.empty()) {
    return no_data(title, fidelity ? "no samples with a dense reference"
                                   : "no scored samples with a dense reference");
  }
  Axis ax{"GPU KV memory, fraction of dense", Scale::Linear, 0, 1, {}};
  const double lo = *std::min_element(xs.begin(), xs.end());
  const double hi = std::max(1.0, *std::max_element(xs.begin(), xs.end()));
  if (lo < 0.15 * hi) {
    ax.scale = Scale::Log10;
    ax.lo = lo / 1.6;
    ax.hi = hi * 1.3;
    ax.title += " (log scale)";
    log10_ticks(ax);
  } else {
    ax.hi = hi * 1.06;
    linear_ticks(ax);
  }
  Axis ay{fidelity ? "fidelity to dense (x100)" : "score (x100)",
          Scale::Linear,
          ymin - 4,
          ymax + 4,
          {}};
  linear_ticks(ay);
  std::vector<Series> series;
  for (const std::string& m : methods) series.push_back(by_method[m]);
  return svg_plot(title, ax, ay, series);
}

// Score vs mean prompt tokens for one task: one line per method (and knob setting).
std::string length_plot(const EvalSummary& summary, const Styles& st, const std::string& task) {
  std::vector<std::pair<std::string, std::string>> order;
  std::map<std::pair<std::string, std::string>, Series> by_key;
  std::vector<double> xs;
  double ymin = 0, ymax = 100;
  for (const CellSummary& c : summary.cells) {
    if (c.task != task) continue;
    const double x = c.mean_prompt_tokens(), y = c.score();
    if (!std::isfinite(x) || !std::isfinite(y) || x <= 0) continue;
    const auto key = std::make_pair(c.method, c.knobs);
    if (!by_key.count(key)) {
      order.push_back(key);
      by_key[key] = {cell_label(c.method, c.knobs), st.color.at(c.method), st.dash.at(key), {}, 0,
                     st.shape.at(c.method)};
    }
    by_key[key].points.push_back(
        {x, y, "",
         fmt::format("{} at {}: score {:.1f}, mean prompt {:.0f} tokens, {} samples",
                     cell_label(c.method, c.knobs), c.length, y, x, c.ran())});
    xs.push_back(x);
    ymin = std::min(ymin, y);
    ymax = std::max(ymax, y);
  }
  const std::string title = fmt::format("{}: score vs prompt length", task);
  if (xs.empty()) return no_data(title, "no scored samples");
  Axis ax{"prompt tokens (log scale)",
          Scale::Log2,
          *std::min_element(xs.begin(), xs.end()) / 1.5,
          *std::max_element(xs.begin(), xs.end()) * 1.5,
          {}};
  log2_ticks(ax);
  Axis ay{"score (x100)", Scale::Linear, ymin - 4, ymax + 4, {}};
  linear_ticks(ay);
  std::vector<Series> series;
  for (const auto& key : order) {
    series.push_back(by_key[key]);
    series.back().dodge = (double(series.size() - 1) - double(order.size() - 1) / 2) * 5.0;
  }
  return svg_plot(title, ax, ay, series);
}

std::string bytes_text(double v) {
  if (!std::isfinite(v)) return "–";
  if (v >= 10 * 1024.0) return fmt::format("{:.1f} KiB", v / 1024.0);
  return fmt::format("{:.0f} B", v);
}

std::string table_html(const EvalSummary& summary) {
  auto f = [](double v, int d) {
    return std::isfinite(v) ? fmt::format("{:.{}f}", v, d) : std::string("–");
  };
  std::ostringstream s;
  s << "<table>\n<thead><tr><th>task</th><th>length</th><th>method</th><th>knobs</th>"
       "<th>score</th><th>fidelity</th><th>samples</th><th>excluded</th>"
       "<th>skipped (too long)</th><th>mean prompt tokens</th><th>GPU KV / token</th>"
       "<th>of dense</th><th>CPU KV / token</th><th>PCIe / step</th><th>prefill tok/s</th>"
       "<th>decode tok/s</th></tr></thead>\n<tbody>\n";
  for (const CellSummary& c : summary.cells) {
    const double pcie = c.ran() > 0 ? c.pcie_bytes_per_step / double(c.ran()) : NAN;
    const double pf = c.prefill_seconds > 0 ? double(c.prompt_tokens) / c.prefill_seconds : NAN;
    const double dc = c.decode_seconds > 0 ? double(c.decode_tokens) / c.decode_seconds : NAN;
    s << fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{}</td></tr>\n",
        esc(c.task), esc(c.length), esc(c.method), esc(c.knobs), f(c.score(), 1),
        f(c.fidelity(), 1), c.ran(), c.excluded, c.skipped, f(c.mean_prompt_tokens(), 0),
        bytes_text(c.gpu_bytes_per_token()), f(c.fraction_of_dense(), 3),
        bytes_text(c.cpu_bytes_per_token()), bytes_text(pcie), f(pf, 0), f(dc, 1));
  }
  s << "</tbody>\n</table>\n";
  return s.str();
}

constexpr const char* kStyle = R"(
body { font-family: Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.meta { color: #555; margin-top: 0; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.plots svg { border: 1px solid #ddd; background: #fff; width: calc(50% - 8px); min-width: 460px;
  max-width: 660px; height: auto; }
.empty { width: 640px; height: 120px; border: 1px dashed #bbb; padding: 10px; color: #777; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
td { white-space: nowrap; }
th { background: #f2f2f2; }
td:nth-child(-n+4), th:nth-child(-n+4) { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
)";

}  // namespace

std::string render_report_html(const EvalSummary& summary, const std::string& title) {
  const Styles st = make_styles(summary);
  const std::vector<std::string> tasks = tasks_in_order(summary);
  std::ostringstream s;
  s << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>"
    << esc(title) << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n";
  s << "<h1>" << esc(title) << "</h1>\n";
  s << fmt::format("<p class=\"meta\">model: {} &middot; device: {} &middot; {} cells{}</p>\n",
                   esc(summary.model), esc(summary.device), summary.cells.size(),
                   summary.max_new_tokens > 0
                       ? fmt::format(" &middot; --max-new-tokens {}", summary.max_new_tokens)
                       : std::string());
  s << "<p>Score: 100 &times; mean per-sample score (Text2JSON reference scorer; fraction of "
       "reference strings found for the contrast tasks). Fidelity: 100 &times; agreement with "
       "the dense output of the same sample. GPU KV memory: device-resident KV bytes over dense's "
       "on the same samples; per-token figures divide by the KV capacity (prompt + generation "
       "limit). Hover a point for its numbers.</p>\n";
  s << "<h2>Score and fidelity vs GPU KV memory (lengths pooled)</h2>\n";
  for (const std::string& t : tasks) {
    s << "<div class=\"plots\">\n"
      << memory_plot(summary, st, t, false) << memory_plot(summary, st, t, true) << "</div>\n";
  }
  s << "<h2>Score vs prompt length</h2>\n<div class=\"plots\">\n";
  for (const std::string& t : tasks) s << length_plot(summary, st, t);
  s << "</div>\n<h2>Table</h2>\n" << table_html(summary);
  s << "</body>\n</html>\n";
  return s.str();
}

std::string write_report(const std::string& dir) {
  const fs::path summary_path = fs::path(dir) / "summary.json";
  std::ifstream in(summary_path, std::ios::binary);
  check(bool(in), "{}: no summary.json (run `kvoffload eval --out {}` first)", dir, dir);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  check(!j.is_discarded(), "{}: not valid JSON", summary_path.string());
  const EvalSummary summary = EvalSummary::from_json(j);
  fs::path name = fs::path(dir).lexically_normal();
  if (name.filename().empty()) name = name.parent_path();
  const std::string html =
      render_report_html(summary, "kvoffload eval: " + name.filename().string());
  const fs::path out = fs::path(dir) / "report.html";
  {
    std::ofstream f(out.string() + ".tmp", std::ios::binary | std::ios::trunc);
    check(bool(f), "cannot write {}", out.string());
    f << html;
    check(bool(f), "writing {} failed", out.string());
  }
  fs::rename(out.string() + ".tmp", out);
  return out.string();
}

}  // namespace kvo
