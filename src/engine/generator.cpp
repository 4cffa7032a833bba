#include "engine/generator.h"

#include <algorithm>
#include <chrono>

#include "engine/decoder.h"
#include "util/error.h"
#include "util/progress.h"

namespace kvo {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Length of the longest suffix of `text` that is a proper prefix of some stop string: those
// bytes may still become a stop string and must not be shown yet.
size_t held_back(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops) {
    for (size_t len = std::min(s.size() - 1, text.size()); len > hold; --len) {
      if (text.compare(text.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  return hold;
}

}  // namespace

double GenerationResult::prefill_tokens_per_second() const {
  return prefill_seconds > 0 ? double(prompt_tokens) / prefill_seconds : 0.0;
}
double GenerationResult::decode_tokens_per_second() const {
  return decode_seconds > 0 && tokens.size() > 1 ? double(tokens.size() - 1) / decode_seconds : 0.0;
}

GenerationResult generate(Transformer& model, const Tokenizer& tokenizer, KvPolicy& kv,
                          std::span<const int32_t> prompt, const GenerationOptions& options,
                          const std::function<void(std::string_view)>& on_text) {
  const int64_t context = model.config().max_context;
  check(!prompt.empty(), "the prompt is empty");
  check(int64_t(prompt.size()) < context,
        "the prompt has {} tokens but the model's context is {} tokens", prompt.size(), context);
  check(options.max_new_tokens >= 0, "--max-new-tokens must be >= 0");
  validate(options.sampling);

  GenerationResult result;
  result.prompt_tokens = static_cast<int64_t>(prompt.size());
  Decoder decoder(model, {&kv}, options.sampling);
  StreamingDecoder text_decoder(tokenizer);
  std::string text;  // all generated text so far
  size_t shown = 0;  // bytes of `text` already passed to on_text
  auto show_up_to = [&](size_t end) {
    if (end > shown && on_text) on_text(std::string_view(text).substr(shown, end - shown));
    shown = std::max(shown, end);
  };

  auto t0 = Clock::now();
  constexpr int64_t kBarAbove = 2048;  // prompt tokens; shorter prefills end before a bar helps
  ProgressBar prefill_bar("prefill", result.prompt_tokens, "tok");
  int32_t id = decoder.prefill(0, prompt, [&](int64_t done, int64_t) {
    if (options.prefill_progress && result.prompt_tokens > kBarAbove) prefill_bar.update(done);
  });
  prefill_bar.finish();
  result.prefill_seconds = seconds_since(t0);

  int64_t position = result.prompt_tokens;
  auto t_decode = Clock::now();
  result.stop_reason = "length";
  for (int step = 0; step < options.max_new_tokens; ++step) {
    const bool is_stop =
        std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end();
    if (is_stop && !options.ignore_eos) {
      result.stop_reason = "eos";
      break;
    }
    result.tokens.push_back(id);
    text += text_decoder.push(id);
    bool stopped = false;
    for (const std::string& s : options.stop_strings) {
      size_t at = text.find(s, shown > s.size() ? shown - s.size() : 0);
      if (!s.empty() && at != std::string::npos) {
        text.resize(at);
        stopped = true;
      }
    }
    if (stopped) {
      result.stop_reason = "stop_string";
      break;
    }
    show_up_to(text.size() - held_back(text, options.stop_strings));
    if (step + 1 == options.max_new_tokens) break;
    if (position + 1 > context) {
      result.stop_reason = "context";
      break;
    }
    if (step == 0) t_decode = Clock::now();  // decode speed excludes the first sample
    id = decoder.step()[0];
    ++position;
  }
  if (result.tokens.size() > 1) result.decode_seconds = seconds_since(t_decode);
  if (result.stop_reason != "stop_string") text += text_decoder.flush();
  show_up_to(text.size());
  result.text = std::move(text);
  result.kv = kv.memory();
  return result;
}

}  // namespace kvo
