#include "eval/text2json_generate.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>

#include "eval/haystack.h"
#include "eval/names.h"
#include "eval/rng.h"
#include "eval/text2json_domains.h"
#include "util/error.h"

namespace kvo {
namespace {

constexpr double kIndirectChance = 0.12;  // share of asked values stated by cross-reference

struct Record {
  std::string name;
  PersonName person;
  std::vector<std::string> values;          // per domain attribute
  std::vector<std::optional<size_t>> same;  // value stated as "same as record j"
  std::vector<size_t> stated;               // attribute indices mentioned in the text
};

std::string capitalize_first(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = char(s[0] - 'a' + 'A');
  return s;
}

// Fills {slot}s; `slot` answers the entity slots, fresh distractor names come from the bank.
class Filler {
 public:
  Filler(Rng& rng, NameBank& names) : rng_(rng), names_(names) {}

  std::string fill(const std::string& tmpl, const std::map<std::string, std::string>& slots) {
    std::string out;
    for (size_t i = 0; i < tmpl.size();) {
      if (tmpl[i] != '{') {
        out += tmpl[i++];
        continue;
      }
      const size_t close = tmpl.find('}', i);
      check(close != std::string::npos, "internal: unclosed slot in template '{}'", tmpl);
      const std::string key = tmpl.substr(i + 1, close - i - 1);
      auto it = slots.find(key);
      out += it != slots.end() ? it->second : fresh(key, tmpl);
      i = close + 1;
    }
    return capitalize_first(out);
  }

 private:
  std::string fresh(const std::string& key, const std::string& tmpl) {
    if (key == "person") return names_.person().full();
    if (key == "city") return names_.city();
    if (key == "company") return names_.company();
    if (key == "store") return names_.store();
    if (key == "title") return names_.title();
    if (key == "hospital") return names_.hospital();
    if (key == "drug") return names_.drug();
    if (key == "journal") return names_.journal();
    if (key == "product") return names_.product();
    if (key == "year") return std::to_string(rng_.range(1950, 2023));
    if (key == "num") return std::to_string(rng_.range(3, 90));
    if (key == "money") return fmt::format("${}", rng_.range(20, 900));
    fail("internal: unknown slot {{{}}} in template '{}'", key, tmpl);
  }

  Rng& rng_;
  NameBank& names_;
};

struct SampleText {
  std::string header, instruction;
  std::vector<std::string> blocks;  // content paragraphs in document order
  std::vector<double> jitter;       // per block, where it sits between filler paragraphs
};

std::map<std::string, std::string> entity_slots(const DomainSpec& d, const Record& r, Rng& rng) {
  std::map<std::string, std::string> s;
  s["name"] = r.name;
  if (d.people) {
    const bool f = r.person.female;
    s["Subj"] = f ? "She" : "He";
    s["subj"] = f ? "she" : "he";
    s["Poss"] = f ? "Her" : "His";
    s["poss"] = f ? "her" : "his";
    s["obj"] = f ? "her" : "him";
  } else {
    s["Subj"] = "It";
    s["subj"] = "it";
    s["Poss"] = "Its";
    s["poss"] = "its";
    s["obj"] = "it";
  }
  std::string ref = rng.pick(d.refs);
  const size_t at = ref.find("{last}");
  if (at != std::string::npos) ref.replace(at, 6, r.person.last);
  s["ref"] = ref;
  s["Ref"] = capitalize_first(ref);
  return s;
}

std::string pick_instruction(Rng& rng, const DomainSpec& d, const AttributeSpec& a1,
                             const AttributeSpec& a2) {
  const std::string keys = fmt::format("\"name\", \"{}\" and \"{}\"", a1.key, a2.key);
  switch (rng.below(3)) {
    case 0:
      return fmt::format(
          "Task: list every {} described in the text above, with its {} and its {}. Answer with "
          "a JSON list of objects, one object per {}, each with exactly the keys {}. Copy every "
          "value as a string, exactly as it is written in the text. Include only {}, no other "
          "kinds of entities. Output only the JSON list.",
          d.category, a1.label, a2.label, d.category, keys, d.plural);
    case 1:
      return fmt::format(
          "Extract all {} mentioned in the text above. For each one, give its name, its {} and "
          "its {}. Return a JSON list of objects with exactly the keys {}; every value is a "
          "string copied exactly from the text. Do not include entities of other kinds. Reply "
          "with the JSON list and nothing else.",
          d.plural, a1.label, a2.label, keys);
    default:
      return fmt::format(
          "Read the text above and find every {}. Write a JSON list in which each {} is one "
          "object with exactly the keys {}: its name, its {} and its {}, each as a string "
          "written exactly as in the text. Skip anything that is not a {}. Output only the "
          "JSON list.",
          d.category, d.category, keys, a1.label, a2.label, d.category);
  }
}

std::string pick_header(Rng& rng, const DomainSpec& d) {
  switch (rng.below(3)) {
    case 0:
      return fmt::format(
          "The following is a long compilation of notes, letters and essays. Scattered through "
          "it are descriptions of several {}. A task about the text follows at the end.",
          d.plural);
    case 1:
      return "Below is a long document made of reports, reviews and unrelated essays. Read all "
             "of it carefully; the instructions come after the document.";
    default:
      return fmt::format(
          "Read the document below. It mixes essays with notes about {} and other things; you "
          "will be asked to extract information from it.",
          d.plural);
  }
}

}  // namespace

nlohmann::ordered_json generate_text2json_sample(const Text2JsonOptions& options, size_t index,
                                                 const TokenCounter& count) {
  check(!options.domains.empty(), "no Text2JSON domain given");
  check(options.records_min >= 1 && options.records_min <= options.records_max,
        "--records must be at least 1 (got {}..{})", options.records_min, options.records_max);
  check(options.target_tokens >= 1024 && options.target_tokens <= 262144,
        "--tokens must be in 1024..262144 (got {})", options.target_tokens);
  const DomainSpec& d = text2json_domain(options.domains[index % options.domains.size()]);
  const uint64_t seed = sample_seed(options.seed, "text2json/" + d.id, index);
  Rng rng(seed);
  NameBank names(rng);
  DomainContext ctx{rng, names, {}, {}, {}, {}};

  // Two asked attributes; the others become distractor statements.
  const std::vector<size_t> asked = rng.sample_indices(d.attributes.size(), 2);
  std::vector<size_t> order = {asked[0], asked[1]};
  if (rng.chance(0.5)) std::swap(order[0], order[1]);
  const AttributeSpec& a1 = d.attributes[order[0]];
  const AttributeSpec& a2 = d.attributes[order[1]];

  size_t n = size_t(rng.range(options.records_min, options.records_max));
  std::vector<Record> records(n);
  for (size_t i = 0; i < n; ++i) {
    Record& r = records[i];
    r.name = d.make_name(ctx, &r.person);
    r.same.assign(d.attributes.size(), std::nullopt);
    for (const AttributeSpec& a : d.attributes) r.values.push_back(a.value(ctx));
    for (size_t a : order) {
      if (i == 0 || !rng.chance(kIndirectChance)) continue;
      const size_t j = rng.below(i);
      if (records[j].same[a]) continue;  // refer only to values stated directly
      r.values[a] = records[j].values[a];
      r.same[a] = j;
    }
    std::vector<size_t> unasked;
    for (size_t a = 0; a < d.attributes.size(); ++a) {
      if (a != order[0] && a != order[1]) unasked.push_back(a);
    }
    rng.shuffle(unasked);
    unasked.resize(size_t(rng.range(1, std::min<int64_t>(3, int64_t(unasked.size())))));
    r.stated = {order[0], order[1]};
    r.stated.insert(r.stated.end(), unasked.begin(), unasked.end());
    rng.shuffle(r.stated);
  }

  // The gold answer must fit the generation limit: drop records from the end (later records
  // may point back to earlier ones, never the reverse).
  auto gold_for = [&](size_t count_records) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (size_t i = 0; i < count_records; ++i) {
      list.push_back({{"name", records[i].name},
                      {a1.key, records[i].values[order[0]]},
                      {a2.key, records[i].values[order[1]]}});
    }
    return list;
  };
  int64_t answer_tokens = count(gold_for(n).dump());
  while (answer_tokens > options.max_answer_tokens && n > 1) {
    --n;
    answer_tokens = count(gold_for(n).dump());
  }
  check(answer_tokens <= options.max_answer_tokens,
        "sample {}: even one record needs {} answer tokens (limit {})", index, answer_tokens,
        options.max_answer_tokens);
  if (n < records.size()) {
    std::fprintf(stderr,
                 "note: sample %zu: reduced to %zu records to keep the answer under %lld tokens\n",
                 index, n, static_cast<long long>(options.max_answer_tokens) + 1);
    records.resize(n);
  }

  // Paragraphs per record: the statements are split over 1..3 paragraphs that will end up far
  // apart, so no record can be read off one place.
  Filler filler(rng, names);
  std::vector<std::deque<std::string>> per_record(n);
  for (size_t i = 0; i < n; ++i) {
    const Record& r = records[i];
    std::vector<std::string> sentences;  // one per statement, plus maybe a remark
    std::vector<bool> needs_name;        // the sentence names the entity itself
    for (size_t a : r.stated) {
      const AttributeSpec& spec = d.attributes[a];
      std::map<std::string, std::string> slots = entity_slots(d, r, rng);
      slots["value"] = r.values[a];
      if (r.same[a]) {
        slots["other"] = records[*r.same[a]].name;
        slots["label"] = spec.label;
        sentences.push_back(filler.fill(rng.pick(indirect_templates()), slots));
        needs_name.push_back(true);
      } else if (rng.chance(0.4)) {
        sentences.push_back(filler.fill(rng.pick(spec.named), slots));
        needs_name.push_back(true);
      } else {
        sentences.push_back(filler.fill(rng.pick(spec.follow), slots));
        needs_name.push_back(false);
      }
    }
    if (rng.chance(0.6)) {
      sentences.push_back(filler.fill(rng.pick(d.remarks), entity_slots(d, r, rng)));
      needs_name.push_back(false);
    }
    const size_t paragraphs = size_t(rng.range(1, std::min<int64_t>(3, int64_t(sentences.size()))));
    // Split points: paragraph p gets sentences [cut[p], cut[p+1]).
    std::vector<size_t> cuts = {0};
    for (size_t c : rng.sample_indices(sentences.size() - 1, paragraphs - 1)) cuts.push_back(c + 1);
    cuts.push_back(sentences.size());
    for (size_t p = 0; p + 1 < cuts.size(); ++p) {
      std::string text;
      // Every paragraph must say whom it is about before using pronouns.
      if (!needs_name[cuts[p]]) {
        const auto& opener = p == 0 ? d.intros : d.returns;
        text = filler.fill(rng.pick(opener), entity_slots(d, r, rng)) + " ";
      }
      for (size_t s = cuts[p]; s < cuts[p + 1]; ++s) {
        text += sentences[s];
        if (s + 1 < cuts[p + 1]) text += ' ';
      }
      per_record[i].push_back(text);
    }
  }
  size_t distractors = std::max<size_t>(1, n / 3 + size_t(rng.range(0, 2)));
  std::vector<std::string> distractor_blocks;
  for (size_t k = 0; k < distractors; ++k) {
    const size_t first = rng.below(d.distractors.size());
    std::string text = filler.fill(d.distractors[first], {});
    if (rng.chance(0.5)) {
      const size_t second =
          (first + 1 + rng.below(d.distractors.size() - 1)) % d.distractors.size();
      text += " " + filler.fill(d.distractors[second], {});
    }
    distractor_blocks.push_back(text);
  }

  // Uniformly random interleaving of all record queues and distractors; records listed in the
  // gold answer in order of first appearance.
  SampleText t;
  std::vector<size_t> first_seen;
  std::vector<bool> seen(n, false);
  size_t remaining = distractor_blocks.size();
  for (const auto& q : per_record) remaining += q.size();
  while (remaining > 0) {
    uint64_t pick = rng.below(remaining);
    bool done = false;
    for (size_t i = 0; i < n && !done; ++i) {
      if (pick < per_record[i].size()) {
        t.blocks.push_back(per_record[i].front());
        per_record[i].pop_front();
        if (!seen[i]) seen[i] = true, first_seen.push_back(i);
        done = true;
      } else {
        pick -= per_record[i].size();
      }
    }
    if (!done) {
      t.blocks.push_back(distractor_blocks[pick]);
      distractor_blocks.erase(distractor_blocks.begin() + long(pick));
    }
    --remaining;
  }
  for (size_t b = 0; b < t.blocks.size(); ++b) t.jitter.push_back(rng.unit());
  t.header = pick_header(rng, d);
  t.instruction = pick_instruction(rng, d, a1, a2);

  nlohmann::ordered_json gold = nlohmann::ordered_json::array();
  for (size_t i : first_seen) {
    gold.push_back({{"name", records[i].name},
                    {a1.key, records[i].values[order[0]]},
                    {a2.key, records[i].values[order[1]]}});
  }
  const std::string answer = gold.dump();
  answer_tokens = count(answer);

  // Filler: consecutive essay sentences from a random paragraph start; content paragraph b
  // goes into gap floor((b + jitter) * (P + 1) / B) between the P filler paragraphs, so content
  // stays spread evenly over the whole document whatever the length.
  const Haystack& hay = load_haystack(options.haystack_dir);
  size_t start = rng.below(hay.sentences.size());
  while (!hay.sentences[start].starts_paragraph) start = (start + 1) % hay.sentences.size();
  auto build = [&](size_t units) {
    const std::vector<std::string> filler_paragraphs = hay.paragraphs(start, units);
    const size_t P = filler_paragraphs.size(), B = t.blocks.size();
    std::vector<std::vector<const std::string*>> gaps(P + 1);
    for (size_t b = 0; b < B; ++b) {
      size_t gap = size_t((double(b) + t.jitter[b]) * double(P + 1) / double(B));
      gaps[std::min(gap, P)].push_back(&t.blocks[b]);
    }
    std::string doc = t.header;
    for (size_t g = 0; g <= P; ++g) {
      for (const std::string* block : gaps[g]) doc += "\n\n" + *block;
      if (g < P) doc += "\n\n" + filler_paragraphs[g];
    }
    return doc + "\n\n" + t.instruction;
  };
  const FitResult fit = fit_to_tokens(
      build, count, options.target_tokens, 28.0, hay.sentences.size() * 8,
      fmt::format("text2json sample {} ({} records, {} tokens)", index, n, options.target_tokens));

  // Every gold string must be stated verbatim, or the sample would be unanswerable.
  for (const auto& rec : gold) {
    for (const auto& [key, value] : rec.items()) {
      check(fit.text.find(value.get<std::string>()) != std::string::npos,
            "internal: sample {}: gold {} '{}' does not appear in the document", index, key,
            value.get<std::string>());
    }
  }

  nlohmann::ordered_json row;
  row["id"] = fmt::format("{}-{}-{}k-{:04d}", options.id_prefix, d.id,
                          (options.target_tokens + 512) / 1024, index);
  row["domain"] = d.id;
  row["category"] = d.category;
  row["attributes"] = {a1.key, a2.key};
  row["records"] = n;
  row["target_tokens"] = options.target_tokens;
  row["prompt_tokens"] = fit.tokens;
  row["answer_tokens"] = answer_tokens;
  row["seed"] = options.seed;
  row["index"] = index;
  row["problem"] = fit.text;
  row["answer"] = answer;
  return row;
}

std::vector<nlohmann::ordered_json> generate_text2json(const Text2JsonOptions& options,
                                                       const TokenCounter& count) {
  std::vector<nlohmann::ordered_json> rows;
  for (size_t i = 0; i < options.samples; ++i) {
    rows.push_back(generate_text2json_sample(options, i, count));
  }
  return rows;
}

}  // namespace kvo
