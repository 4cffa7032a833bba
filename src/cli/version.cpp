// `kvoffload version`: prints the version and the compiled-in backends.
#include <cstdio>

#include "cli/commands.h"

namespace kvo::cli {
namespace {

std::function<void()> make_version(CLI::App& app) {
  app.add_subcommand("version", "Print the version and the compiled-in backends");
  return [] {
#ifdef KVO_HAVE_CUDA
    std::printf("kvoffload 0.1.0 (backends: cpu, cuda)\n");
#else
    std::printf("kvoffload 0.1.0 (backends: cpu)\n");
#endif
  };
}

}  // namespace
KVO_REGISTER_COMMAND("version", make_version);
}  // namespace kvo::cli
