// The tiny-model oracle fixtures (tests/fixtures/models/<name>/: an HF checkpoint plus
// expected.json from tests/oracle/make_model_fixtures.py), shared by the CPU and CUDA tests.
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/weights.h"

namespace kvo::testing {

struct LogitFixture {
  LoadedModel model;
  std::vector<int32_t> ids;
  std::vector<int64_t> positions;          // positions whose logits HF saved
  std::vector<std::vector<float>> logits;  // (positions, vocab)
  std::vector<float> margins;              // HF's top1 - top2 logit at every position
};

inline LogitFixture load_logit_fixture(const std::string& name) {
  const std::string dir = std::string(KVO_TEST_DATA_DIR) + "/fixtures/models/" + name;
  LogitFixture f{load_hf_checkpoint(dir), {}, {}, {}, {}};
  std::ifstream in(dir + "/expected.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  f.ids = j.at("input_ids").get<std::vector<int32_t>>();
  f.positions = j.at("positions").get<std::vector<int64_t>>();
  f.logits = j.at("logits").get<std::vector<std::vector<float>>>();
  f.margins = j.at("top2_margin_all").get<std::vector<float>>();
  return f;
}

}  // namespace kvo::testing
