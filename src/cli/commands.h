// Each subcommand lives in its own cli/<name>.cpp and registers itself with
// KVO_REGISTER_COMMAND; cli/ sources are compiled into the executable, so the static
// registrars always run and no central list needs editing.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace kvo::cli {

// Adds the subcommand (and its options) to the app; returns the action to run when chosen.
using CommandFactory = std::function<std::function<void()>(CLI::App& app)>;

bool register_command(const std::string& name, CommandFactory factory);
void add_registered_commands(CLI::App& app);
void run_selected(CLI::App& app);

}  // namespace kvo::cli

#define KVO_REGISTER_COMMAND(name, factory) \
  static const bool kvo_registered_##factory = ::kvo::cli::register_command(name, factory)
