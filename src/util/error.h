// One exception type for every user-facing failure: bad files, bad flags, impossible budgets.
// The CLI catches it, prints "error: <message>" on one line and exits with status 1.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace kvo {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Checks a condition that depends on input data (not a programming error).
template <typename... Args>
void check(bool ok, fmt::format_string<Args...> format, Args&&... args) {
  if (!ok) throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace kvo
