#include "util/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace kvo {

using Clock = std::chrono::steady_clock;

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), start_(Clock::now()) {}

ProgressBar::~ProgressBar() {
  finish();
}

bool ProgressBar::enabled() {
  static const bool on = isatty(STDERR_FILENO) && !std::getenv("KVOFFLOAD_NO_PROGRESS");
  return on;
}

void ProgressBar::update(int64_t done) {
  done_ = std::min(done, total_);
  const auto now = Clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
  last_draw_ = now;
  draw(false);
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (drawn_) draw(true);
}

void ProgressBar::draw(bool final) {
  if (!enabled()) return;
  drawn_ = true;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double frac = total_ > 0 ? double(done_) / double(total_) : 1.0;
  const double rate = elapsed > 0 ? double(done_) / elapsed : 0.0;
  const double eta = rate > 0 ? double(total_ - done_) / rate : 0.0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r%s [%s] %lld/%lld %s  %.1f %s/s  ETA %.0fs   %s", label_.c_str(),
               bar.c_str(), static_cast<long long>(done_), static_cast<long long>(total_),
               unit_.c_str(), rate, unit_.c_str(), eta, final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace kvo
