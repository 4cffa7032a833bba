// Runs the built `kvoffload` binary in a shell and captures its output, for CLI tests.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

namespace kvo::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

inline CommandResult run_kvoffload(const std::string& args) {
  const auto err_path = std::filesystem::temp_directory_path() /
                        ("kvo_stderr_" + std::to_string(::getpid()) + ".txt");
  const std::string cmd =
      std::string(KVO_BINARY) + " " + args + " 2>" + err_path.string() + " </dev/null";
  CommandResult r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (FILE* f = std::fopen(err_path.c_str(), "rb")) {
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) r.err.append(buf.data(), n);
    std::fclose(f);
  }
  std::filesystem::remove(err_path);
  return r;
}

inline std::string default_model_path() {
  return std::string(KVO_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace kvo::testing
