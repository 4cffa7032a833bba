// `kvoffload quantize-stats` end to end through the built binary.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "quant/device.h"

namespace {

struct Result {
  int status = -1;
  std::string out;  // stdout and stderr together
};

Result run(const std::string& args) {
  const std::string cmd = std::string(KVO_BINARY) + " " + args + " 2>&1";
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t got;
  while ((got = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), got);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(QuantStatsCli, JsonReportsBitsAndMse) {
  const Result r = run("quantize-stats --quantizer higgs:d=4,n=256 --samples 1024 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_DOUBLE_EQ(j["bits_per_value"].get<double>(), 2.25);
  EXPECT_NEAR(j["mse_per_value"].get<double>(), 0.095, 0.01);
}

TEST(QuantStatsCli, BadSpecIsOneErrorLine) {
  const Result r = run("quantize-stats --quantizer higgs:d=4,n=256,gruop=64");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out.rfind("error: unknown key 'gruop'", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << r.out;
}

TEST(QuantStatsCli, CudaWithoutDeviceIsOneErrorLine) {
  if (kvo::quant::cuda_device_available()) GTEST_SKIP() << "a CUDA device is present";
  const Result r = run("quantize-stats --quantizer higgs:d=4,n=256 --device cuda");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out.rfind("error: --device cuda: ", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << r.out;
}

}  // namespace
