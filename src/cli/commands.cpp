#include "cli/commands.h"

#include <map>

namespace kvo::cli {
namespace {

std::map<std::string, CommandFactory>& factories() {
  static std::map<std::string, CommandFactory> map;
  return map;
}
std::map<std::string, std::function<void()>>& actions() {
  static std::map<std::string, std::function<void()>> map;
  return map;
}

}  // namespace

bool register_command(const std::string& name, CommandFactory factory) {
  factories()[name] = std::move(factory);
  return true;
}

void add_registered_commands(CLI::App& app) {
  for (auto& [name, factory] : factories()) actions()[name] = factory(app);
}

void run_selected(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands()) {
    auto it = actions().find(sub->get_name());
    if (it != actions().end() && it->second) it->second();
  }
}

}  // namespace kvo::cli
