// `kvoffload report DIR`: one self-contained HTML page (inline SVG, no scripts, no network)
// from DIR/summary.json: score and fidelity vs GPU KV memory (fraction of dense) per task,
// score vs prompt length per method, and the summary table.
#pragma once
#include <string>

#include "eval/cell_summary.h"

namespace kvo {

// The whole page for a summary. `title` heads the page.
std::string render_report_html(const EvalSummary& summary, const std::string& title);

// Reads DIR/summary.json, writes DIR/report.html and returns its path; kvo::Error when DIR has
// no summary (run `kvoffload eval --out DIR` first).
std::string write_report(const std::string& dir);

}  // namespace kvo
