// A terminal progress bar on stderr with rate and ETA, drawn only when stderr is a terminal
// (logs and CI output stay clean). Thread-compatible, not thread-safe.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace kvo {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, std::string unit = "it");
  ~ProgressBar();  // finishes the line if anything was drawn
  void update(int64_t done);
  void finish();
  static bool enabled();  // stderr is a TTY and KVOFFLOAD_NO_PROGRESS is unset

 private:
  void draw(bool final);
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false, finished_ = false;
};

}  // namespace kvo
