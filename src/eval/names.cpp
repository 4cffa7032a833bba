#include "eval/names.h"

#include <vector>

#include "util/error.h"

namespace kvo {
namespace {

using Words = std::vector<std::string>;

const Words kOnsets = {"b",  "br", "c", "d",  "dr", "f",  "g",  "gr", "h",  "j", "k",
                       "kr", "l",  "m", "n",  "p",  "pr", "r",  "s",  "st", "t", "tr",
                       "v",  "w",  "z", "th", "sk", "fl", "cl", "bl", "sh", "qu"};
const Words kVowels = {"a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "io", "y"};
const Words kSimpleVowels = {"a", "e", "i", "o", "u"};
const Words kCodas = {"", "", "", "n", "r", "l", "s", "x", "th", "nd", "rk", "lt", "m", "v"};

const Words kFemaleFirst = {"Amara",  "Talia",  "Nora",  "Elena",     "Priya",  "Ingrid", "Maya",
                            "Lucia",  "Hannah", "Zara",  "Freya",     "Odette", "Mirela", "Keiko",
                            "Sofia",  "Anika",  "Leona", "Beatrix",   "Clara",  "Dalia",  "Esme",
                            "Greta",  "Iris",   "Jana",  "Lena",      "Noemi",  "Rosa",   "Selma",
                            "Tamsin", "Vera",   "Yara",  "Wilhelmina"};
const Words kMaleFirst = {"Tobias",  "Marcus", "Elias",   "Rafael", "Anders", "Kenji",  "Omar",
                          "Felix",   "Hugo",   "Ivan",    "Jonah",  "Lucas",  "Matteo", "Nikolai",
                          "Oscar",   "Pavel",  "Quentin", "Ronan",  "Silas",  "Theo",   "Viktor",
                          "Desmond", "Arjun",  "Bruno",   "Caspar", "Dorian", "Emil",   "Gideon",
                          "Henrik",  "Jasper", "Leopold", "Magnus"};
const Words kSurnameEnds = {"",    "",    "son", "wick", "ley", "ton", "field", "berg",
                            "ard", "ell", "ova", "ez",   "man", "er",  "by",    "ridge"};
const Words kCompanySuffix = {"Dynamics",   "Holdings",   "Systems",      "Labs",
                              "Group",      "Industries", "Analytics",    "Partners",
                              "Logistics",  "Works",      "Technologies", "Corporation",
                              "Collective", "Ventures",   "Consolidated"};
const Words kModels = {"X4",     "S7",  "Pro 12", "Air", "Mini 3", "Max",   "One",
                       "Flex 2", "Z9",  "Lite",   "500", "Ultra",  "G3",    "Neo",
                       "Duo",    "Pro", "Q8",     "Go",  "Edge 5", "Prime", "T2"};
const Words kAdjectives = {"Silent",    "Crimson", "Hollow",   "Golden", "Broken",    "Distant",
                           "Quiet",     "Burning", "Frozen",   "Hidden", "Restless",  "Pale",
                           "Wandering", "Bitter",  "Electric", "Last",   "Endless",   "Velvet",
                           "Scarlet",   "Iron",    "Northern", "Lonely", "Shattered", "Amber"};
const Words kNouns = {"Harbor",   "Orchard",   "Lantern",   "River",  "Mirror",     "Garden",
                      "Signal",   "Frontier",  "Winter",    "Tide",   "Crossing",   "Kingdom",
                      "Echo",     "Compass",   "Station",   "Letter", "Horizon",    "Meadow",
                      "Citadel",  "Voyage",    "Reckoning", "Summer", "Lighthouse", "Promise",
                      "Carnival", "Labyrinth", "Covenant",  "Silence"};

std::string capitalize(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = char(s[0] - 'a' + 'A');
  return s;
}

}  // namespace

template <typename F>
std::string NameBank::unique(F make) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::string name = make();
    if (claim(name)) return name;
  }
  fail("could not find a fresh fictional name after 1000 attempts");
}

std::string NameBank::word(int syllables) {
  if (syllables <= 0) syllables = int(rng_.range(2, 3));
  std::string w;
  for (int i = 0; i < syllables; ++i) {
    // Skipping the onset now and then gives vowel-initial or flowing words ("Aelor", "Miora").
    if (i == 0 || rng_.chance(0.75)) {
      w += rng_.pick(kOnsets);
      w += rng_.pick(kVowels);
    } else {
      w += rng_.pick(kSimpleVowels);  // no onset: a digraph here would stack three vowels
    }
  }
  w += rng_.pick(kCodas);
  return capitalize(w);
}

PersonName NameBank::person() {
  PersonName p;
  p.female = rng_.chance(0.5);
  std::string full = unique([&] {
    p.first = rng_.pick(p.female ? kFemaleFirst : kMaleFirst);
    p.last = word(2) + rng_.pick(kSurnameEnds);
    return p.full();
  });
  return p;
}

std::string NameBank::city() {
  return unique([&] {
    const std::string w = word(2);
    switch (rng_.below(8)) {
      case 0:
        return w + "ford";
      case 1:
        return w + "haven";
      case 2:
        return "Port " + w;
      case 3:
        return w + " Falls";
      case 4:
        return "New " + w;
      case 5:
        return w + "dale";
      case 6:
        return "Lake " + w;
      default:
        return w + "ton";
    }
  });
}

std::string NameBank::company() {
  return unique([&] { return word() + " " + rng_.pick(kCompanySuffix); });
}

std::string NameBank::product() {
  return unique([&] { return word() + " " + rng_.pick(kModels); });
}

std::string NameBank::title() {
  return unique([&]() -> std::string {
    const std::string adj = rng_.pick(kAdjectives), noun = rng_.pick(kNouns);
    switch (rng_.below(8)) {
      case 0:
        return "The " + adj + " " + noun;
      case 1:
        return noun + " of " + word(2);
      case 2:
        return "The Last " + noun;
      case 3:
        return rng_.pick(rng_.chance(0.5) ? kFemaleFirst : kMaleFirst) + "\xE2\x80\x99s " + noun;
      case 4:
        return "Beyond the " + adj + " " + noun;
      case 5:
        return adj + " " + noun;
      case 6:
        return "A " + noun + " for " + word(2);
      default:
        return "Under the " + adj + " " + noun;
    }
  });
}

std::string NameBank::hospital() {
  return unique([&]() -> std::string {
    switch (rng_.below(4)) {
      case 0:
        return word() + " General Hospital";
      case 1:
        return word() + " Medical Center";
      case 2:
        return "Saint " + rng_.pick(rng_.chance(0.5) ? kFemaleFirst : kMaleFirst) + " Hospital";
      default:
        return word() + " Regional Clinic";
    }
  });
}

std::string NameBank::medical_school() {
  return unique([&]() -> std::string {
    switch (rng_.below(3)) {
      case 0:
        return word() + " University School of Medicine";
      case 1:
        return word() + " College of Medicine";
      default:
        return word() + " Institute of Medicine";
    }
  });
}

std::string NameBank::studio() {
  static const Words kKinds = {"Pictures", "Studios", "Films", "Entertainment"};
  return unique([&] { return word() + " " + rng_.pick(kKinds); });
}

std::string NameBank::store() {
  static const Words kKinds = {"Electronics", "Supply", "Outlet", "Gadget House", "Tech Store"};
  return unique([&] { return word() + " " + rng_.pick(kKinds); });
}

std::string NameBank::drug() {
  static const Words kEnds = {"ine", "ol", "ex", "azole", "amab", "pril"};
  return unique([&] { return word(2) + rng_.pick(kEnds); });
}

std::string NameBank::journal() {
  return unique([&] { return "the " + word() + " Journal of Medicine"; });
}

}  // namespace kvo
