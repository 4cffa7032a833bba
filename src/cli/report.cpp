// `kvoffload report DIR`: DIR/report.html from the summary `kvoffload eval --out DIR` wrote.
#include "eval/report.h"

#include <cstdio>

#include "cli/commands.h"

namespace kvo::cli {
namespace {

std::function<void()> make_report(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Write DIR/report.html (SVG plots and the table) from an eval's DIR/summary.json");
  cmd->add_option("dir", *dir, "The --out folder of `kvoffload eval`")->required();
  return [dir] {
    const std::string path = write_report(*dir);
    std::printf("wrote %s\n", path.c_str());
  };
}

}  // namespace
KVO_REGISTER_COMMAND("report", make_report);
}  // namespace kvo::cli
