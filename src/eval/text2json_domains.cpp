#include "eval/text2json_domains.h"

#include <fmt/format.h>

#include "util/error.h"

namespace kvo {
namespace {

using Words = std::vector<std::string>;

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string year(DomainContext& c, int lo, int hi) {
  return std::to_string(c.rng.range(lo, hi));
}

std::string price(DomainContext& c) {
  static const int kCents[] = {99, 49, 0, 95, 90};
  const int64_t dollars = c.rng.chance(0.5) ? c.rng.range(19, 399) : c.rng.range(400, 2999);
  return fmt::format("${}.{:02d}", with_commas(dollars), kCents[c.rng.below(5)]);
}

std::string weight(DomainContext& c) {
  if (c.rng.chance(0.5)) return fmt::format("{} g", c.rng.range(85, 980));
  return fmt::format("{}.{} kg", c.rng.range(1, 9), c.rng.range(0, 9));
}

std::string millions(DomainContext& c, int lo, int hi) {
  return fmt::format("${}.{} million", c.rng.range(lo, hi), c.rng.range(1, 9));
}

const Words kColors = {"midnight blue",  "slate gray",  "coral red",  "forest green",
                       "pearl white",    "matte black", "sand beige", "copper",
                       "lavender",       "graphite",    "ocean teal", "sunset orange",
                       "ivory",          "charcoal",    "rose gold",  "olive green",
                       "mustard yellow", "silver",      "burgundy",   "sky blue"};
const Words kWarranties = {"6 months", "1 year", "18 months", "2 years", "3 years", "5 years"};
const Words kSpecialties = {
    "cardiology",     "dermatology",        "neurology",           "pediatrics",
    "oncology",       "orthopedic surgery", "radiology",           "psychiatry",
    "endocrinology",  "gastroenterology",   "nephrology",          "ophthalmology",
    "anesthesiology", "emergency medicine", "rheumatology",        "pulmonology",
    "urology",        "geriatrics",         "infectious diseases", "obstetrics"};
const Words kIndustries = {"logistics software",    "renewable energy",      "commercial insurance",
                           "industrial robotics",   "food distribution",     "cloud security",
                           "freight shipping",      "medical devices",       "consumer electronics",
                           "specialty chemicals",   "online education",      "water treatment",
                           "sports apparel",        "precision agriculture", "payment processing",
                           "architectural design",  "satellite imaging",     "pet nutrition",
                           "textile manufacturing", "hotel management"};
const Words kGenres = {
    "science fiction",    "romantic comedy", "crime drama",   "psychological thriller",
    "animated adventure", "historical epic", "horror",        "musical",
    "war drama",          "mystery",         "western",       "political satire",
    "sports drama",       "fantasy",         "family comedy", "disaster film"};

DomainSpec products() {
  DomainSpec d;
  d.id = "products";
  d.category = "product";
  d.plural = "products";
  d.make_name = [](DomainContext& c, PersonName*) { return c.names.product(); };
  d.refs = {"the device", "the gadget", "this product", "the unit", "this model"};
  d.intros = {
      "{name} is one of the gadgets that kept coming up in conversations this year.",
      "Next on the list is the {name}.",
      "Consider the {name}, a device that reviewers keep mentioning.",
      "Among the products readers asked about, the {name} stood out.",
      "A reader from {city} wrote in to ask about the {name}.",
      "The {name} deserves a closer look.",
      "We spent two weeks testing the {name}.",
  };
  d.returns = {"Back to the {name}.", "A few more notes on the {name}.",
               "Returning to the {name} mentioned earlier:", "More about the {name}.",
               "The {name} came up again in our mailbag."};
  d.remarks = {
      "Reviewers praised {poss} build quality.",
      "Some owners complained about {poss} menus.",
      "{Subj} ships with a short printed manual.",
      "{Ref} feels solid in the hand.",
      "{person}, who tested {obj} for a month, called it dependable.",
      "Not everyone liked the clicking sound of {poss} buttons.",
      "The packaging of {ref} is almost entirely recycled cardboard.",
  };
  d.distractors = {
      "The retailer {store}, based in {city}, opened a second branch in {year} and now employs "
      "{num} people.",
      "{person}, a technology columnist from {city}, has reviewed gadgets for {num} years and "
      "refuses to name a favorite.",
      "The trade fair in {city} drew thousands of visitors in {year}, most of them resellers; "
      "its organizer, {person}, called it the busiest edition yet.",
      "{company}, a logistics firm founded in {year}, moves much of the region's electronics "
      "from port to shelf.",
      "The novel {title} by {person} describes a town where every appliance talks back; it came "
      "out in {year}.",
      "A repair shop called {store} in {city} charges {money} for a basic diagnostic.",
  };
  d.attributes = {
      {"price",
       "price",
       price,
       {"The {name} retails for {value}.", "The list price of the {name} is {value}.",
        "Shoppers can pick up the {name} for {value} at {store}, a shop in {city}.",
        "At launch, the {name} carried a price tag of {value}."},
       {"{Subj} costs {value}.", "{Ref} is priced at {value}.", "Expect to pay {value} for {obj}.",
        "The asking price is {value}, according to {person} at {store}."}},
      {"weight",
       "weight",
       weight,
       {"The {name} weighs {value}.", "The {name} tips the scales at {value}.",
        "Weighing in at {value}, the {name} is easy to carry.",
        "On a kitchen scale the {name} came to exactly {value}."},
       {"{Subj} weighs {value}.", "{Ref} has a weight of {value}.",
        "All told, {poss} weight is {value}.", "Carrying {obj} around means lugging {value}."}},
      {"battery_life",
       "battery life",
       [](DomainContext& c) { return fmt::format("{} hours", c.rng.range(4, 60)); },
       {"The {name} runs for {value} on a single charge.",
        "The battery in the {name} lasts {value}.",
        "In tests run by {person}, the {name} kept going for {value} before shutting down.",
        "Owners of the {name} report a battery life of {value}."},
       {"{Poss} battery is rated for {value}.", "On a full charge {subj} lasts {value}.",
        "Battery life comes in at {value}.", "{Ref} can run for {value} between charges."}},
      {"manufacturer",
       "manufacturer",
       [](DomainContext& c) { return c.names.company(); },
       {"The {name} is made by {value}.", "{value} manufactures the {name}.",
        "The {name} comes out of the factories of {value}.",
        "Engineers at {value} designed and built the {name}."},
       {"{Subj} is produced by {value}.", "{Ref} is built by {value}.",
        "The company behind {obj} is {value}.", "{Poss} maker, {value}, is based in {city}."}},
      {"release_year",
       "release year",
       [](DomainContext& c) { return year(c, 2008, 2024); },
       {"The {name} was released in {value}.", "The {name} first reached stores in {value}.",
        "{value} saw the launch of the {name}.",
        "The {name} has been on the market since {value}."},
       {"{Subj} came out in {value}.", "{Ref} launched in {value}.",
        "The first units shipped in {value}.", "{Subj} has been sold since {value}."}},
      {"color",
       "color",
       [](DomainContext& c) { return c.rng.pick(kColors); },
       {"The {name} comes in {value}.", "The {name} is sold in a {value} finish.",
        "The only color offered for the {name} is {value}.",
        "You will recognize the {name} by its {value} casing."},
       {"{Poss} casing is {value}.", "{Subj} is finished in {value}.",
        "Every unit ships in {value}.", "The color of {ref} is {value}."}},
      {"warranty",
       "warranty",
       [](DomainContext& c) { return c.rng.pick(kWarranties); },
       {"The {name} is covered by a warranty of {value}.",
        "Buyers of the {name} get {value} of warranty coverage.",
        "The warranty on the {name} runs for {value}.",
        "The {name} comes with {value} of warranty protection."},
       {"{Subj} carries a warranty of {value}.", "Warranty coverage lasts {value}.",
        "{Ref} is backed by {value} of warranty.", "{Poss} warranty period is {value}."}},
  };
  return d;
}

DomainSpec medical() {
  DomainSpec d;
  d.id = "medical";
  d.category = "medical professional";
  d.plural = "medical professionals";
  d.people = true;
  d.make_name = [](DomainContext& c, PersonName* p) {
    *p = c.names.person();
    return p->full();
  };
  d.refs = {"Dr. {last}", "Dr. {last}", "the doctor", "the physician"};
  d.intros = {
      "Dr. {name} came up several times in our interviews.",
      "Next comes Dr. {name}.",
      "Patients in {city} often mention Dr. {name}.",
      "Consider the case of Dr. {name}.",
      "One of the physicians profiled this year is {name}.",
      "{name} agreed to speak with us between appointments.",
      "Among the doctors nominated by readers was {name}.",
  };
  d.returns = {"Back to Dr. {name}.", "A few more notes on Dr. {name}.",
               "Returning to Dr. {name}, mentioned earlier:", "More about {name}.",
               "We heard again about Dr. {name} later."};
  d.remarks = {
      "Patients describe {obj} as patient and thorough.",
      "{Subj} volunteers at a free clinic on weekends.",
      "{Ref} still answers letters from former patients by hand.",
      "A patient named {person} credits {obj} with catching an early diagnosis.",
      "Colleagues say {subj} rarely takes a vacation.",
      "{Subj} has written several short essays about bedside manner.",
  };
  d.distractors = {
      "The hospital administrator {person} announced in {year} that a new wing would open, "
      "funded by a {money} grant.",
      "A patient named {person}, a retired teacher from {city}, wrote a letter thanking the "
      "nursing staff of {hospital}.",
      "The drug {drug}, approved in {year}, is sold by {company} and costs {money} per box.",
      "{journal} published {num} articles on rural health care last year.",
      "The pharmaceutical company {company} moved its research labs to {city} in {year}.",
      "The hospital {hospital} treated {num} patients during the winter flu season.",
  };
  d.attributes = {
      {"specialty",
       "specialty",
       [](DomainContext& c) { return c.rng.pick(kSpecialties); },
       {"Dr. {name} specializes in {value}.", "{name} is a specialist in {value}.",
        "Dr. {name} practices {value}.",
        "Colleagues know {name} as one of the most careful practitioners of {value} in the "
        "region."},
       {"{Poss} specialty is {value}.", "{Subj} works in {value}.",
        "{Ref} trained further in {value} and has practiced it ever since.",
        "{Subj} chose {value} as a specialty early on."}},
      {"hospital",
       "hospital",
       [](DomainContext& c) {
         return c.pooled(c.hospitals, 4, [&] { return c.names.hospital(); });
       },
       {"Dr. {name} works at {value}.", "{name} is on staff at {value}.",
        "Dr. {name} sees patients at {value}.", "{value} employs {name}."},
       {"{Subj} is affiliated with {value}.", "{Ref} holds a position at {value}.",
        "These days {subj} can be found at {value}.", "{Poss} employer is {value}."}},
      {"years_of_experience",
       "years of experience",
       [](DomainContext& c) { return fmt::format("{} years", c.rng.range(3, 38)); },
       {"Dr. {name} has {value} of experience.", "{name} has been practicing for {value}.",
        "With {value} of clinical work behind {obj}, Dr. {name} rarely rushes a diagnosis.",
        "{name} has spent {value} in medicine."},
       {"{Subj} has been in practice for {value}.", "{Ref} brings {value} of experience.",
        "{Poss} career in medicine spans {value}.", "{Subj} has treated patients for {value}."}},
      {"license_number",
       "license number",
       [](DomainContext& c) { return fmt::format("MD-{:06d}", c.rng.range(100000, 999999)); },
       {"Dr. {name} holds medical license {value}.",
        "The state board lists {name} under license number {value}.",
        "The license number of Dr. {name} is {value}.",
        "{name} renewed license {value} last spring."},
       {"{Poss} license number is {value}.", "{Subj} is registered under license {value}.",
        "{Ref} practices under license {value}.", "The board's records show license {value}."}},
      {"city",
       "city",
       [](DomainContext& c) { return c.pooled(c.cities, 5, [&] { return c.names.city(); }); },
       {"Dr. {name} lives and works in {value}.", "{name} is based in {value}.",
        "Dr. {name} practices in the city of {value}.",
        "{value} is where {name} keeps a practice."},
       {"{Subj} is based in {value}.", "{Ref} moved to {value} years ago and stayed.",
        "Home for {obj} is {value}.", "{Subj} practices in {value}."}},
      {"medical_school",
       "medical school",
       [](DomainContext& c) {
         return c.pooled(c.schools, 4, [&] { return c.names.medical_school(); });
       },
       {"Dr. {name} graduated from {value}.", "{name} earned a medical degree at {value}.",
        "{name} trained at {value}.", "{value} counts Dr. {name} among its graduates."},
       {"{Subj} studied medicine at {value}.", "{Ref} is a graduate of {value}.",
        "{Poss} medical degree comes from {value}.", "{Subj} went to medical school at {value}."}},
  };
  return d;
}

DomainSpec organizations() {
  DomainSpec d;
  d.id = "organizations";
  d.category = "organization";
  d.plural = "organizations";
  d.make_name = [](DomainContext& c, PersonName*) { return c.names.company(); };
  d.refs = {"the company", "the firm", "the organization", "the business"};
  d.intros = {
      "{name} appears in several of the reports we collected.",
      "Next is {name}.",
      "Analysts in {city} keep an eye on {name}.",
      "Consider {name}, a company that rarely seeks attention.",
      "Several readers asked us about {name}.",
      "The story of {name} is worth telling.",
      "We visited {name} last autumn.",
  };
  d.returns = {"Back to {name}.", "A few more notes on {name}.",
               "Returning to {name}, mentioned earlier:", "More about {name}.",
               "{name} came up again later in our reporting."};
  d.remarks = {
      "{Subj} has been the subject of several press profiles.",
      "{Ref} prefers to promote managers from within.",
      "Its annual meeting is known for being short.",
      "A former employee, {person}, described the culture as demanding but fair.",
      "{Ref} sponsors a youth football team.",
      "Few people outside the industry have heard of {obj}.",
  };
  d.distractors = {
      "{person}, an economist in {city}, has written {num} books on corporate strategy.",
      "The product {product}, launched in {year}, sells for {money}.",
      "The city of {city} elected {person} as mayor in {year}.",
      "{title}, a business bestseller by {person}, came out in {year}.",
      "The consultant {person} charges {money} for a single day of advice.",
      "A conference on supply chains held in {city} in {year} attracted {num} speakers.",
  };
  d.attributes = {
      {"founding_year",
       "founding year",
       [](DomainContext& c) { return year(c, 1890, 2019); },
       {"{name} was founded in {value}.", "{name} has been around since {value}.",
        "{value} marked the founding of {name}.", "{name} opened its doors in {value}."},
       {"{Subj} was established in {value}.", "{Ref} dates back to {value}.",
        "The founders set {obj} up in {value}.", "{Subj} began trading in {value}."}},
      {"headquarters",
       "headquarters",
       [](DomainContext& c) { return c.pooled(c.cities, 6, [&] { return c.names.city(); }); },
       {"{name} is headquartered in {value}.", "{name} runs its operations from {value}.",
        "The head office of {name} is in {value}.",
        "{value} is home to the headquarters of {name}."},
       {"{Poss} headquarters are in {value}.", "{Ref} is based in {value}.",
        "{Subj} keeps its main office in {value}.", "The head office sits in {value}."}},
      {"ceo",
       "CEO",
       [](DomainContext& c) { return c.names.person().full(); },
       {"{name} is led by chief executive {value}.", "{value} serves as the CEO of {name}.",
        "The chief executive of {name} is {value}.", "{value} has run {name} as CEO for years."},
       {"{Poss} CEO is {value}.", "{Ref} is run by {value}.",
        "At the top of {ref} sits {value}, the chief executive.",
        "The CEO, {value}, rarely gives interviews."}},
      {"employee_count",
       "number of employees",
       [](DomainContext& c) {
         return with_commas(c.rng.chance(0.4) ? c.rng.range(12, 950) : c.rng.range(1000, 48000));
       },
       {"{name} employs {value} people.", "{name} has a workforce of {value}.",
        "{name} counts {value} employees.", "The payroll of {name} lists {value} people."},
       {"{Subj} has {value} employees.", "{Ref} employs {value} staff.",
        "The headcount stands at {value}.", "{Poss} workforce numbers {value}."}},
      {"industry",
       "industry",
       [](DomainContext& c) { return c.rng.pick(kIndustries); },
       {"{name} operates in {value}.", "{name} is a company in {value}.",
        "{name} makes its money in {value}.", "{name} has built its business on {value}."},
       {"{Subj} works in {value}.", "{Ref} belongs to the {value} sector.",
        "{Poss} business is {value}.", "{Subj} competes in {value}."}},
      {"annual_revenue",
       "annual revenue",
       [](DomainContext& c) {
         return c.rng.chance(0.8)
                    ? fmt::format("${} million", c.rng.range(2, 950))
                    : fmt::format("${}.{} billion", c.rng.range(1, 40), c.rng.range(1, 9));
       },
       {"{name} reported annual revenue of {value}.", "{name} brings in {value} a year.",
        "Last year {name} earned {value} in revenue.", "Annual sales at {name} reached {value}."},
       {"{Poss} yearly revenue is {value}.", "{Subj} books {value} in annual sales.",
        "{Ref} made {value} over the last fiscal year.", "Revenue came to {value} last year."}},
  };
  return d;
}

DomainSpec movies() {
  DomainSpec d;
  d.id = "movies";
  d.category = "movie";
  d.plural = "movies";
  d.make_name = [](DomainContext& c, PersonName*) { return c.names.title(); };
  d.refs = {"the film", "the movie", "the picture"};
  d.intros = {
      "{name} is a film that several critics discussed this season.",
      "Next up is {name}.",
      "Take {name}, a picture that found a loyal audience.",
      "A film club in {city} recently screened {name}.",
      "Readers keep recommending {name}.",
      "We rewatched {name} for this piece.",
      "The film {name} deserves another look.",
  };
  d.returns = {"Back to {name}.", "A few more notes on {name}.",
               "Returning to {name}, mentioned earlier:", "More about the film {name}.",
               "{name} came up again in the letters we received."};
  d.remarks = {
      "The soundtrack of {ref} is often praised.",
      "Critics were divided about {poss} ending.",
      "{Subj} was shot mostly on location.",
      "The critic {person} called {obj} uneven but memorable.",
      "{Ref} has since become a cult favorite.",
      "Some scenes of {ref} were cut for television.",
  };
  d.distractors = {
      "The novel {title}, written by {person} and published in {year}, runs {num} pages.",
      "The television series {title} ran for several seasons starting in {year}; it was created "
      "by {person}.",
      "{title}, a stage play written by {person}, opened at a small theater in {city} in {year}.",
      "The critic {person} has reviewed films for {num} years from {city}.",
      "The documentary series {title} was narrated by {person} and aired in {year}.",
      "The album {title} by {person} sold {num} copies in its first week.",
  };
  d.attributes = {
      {"director",
       "director",
       [](DomainContext& c) { return c.names.person().full(); },
       {"{name} was directed by {value}.", "{value} directed {name}.",
        "{name} is the work of director {value}.", "{value} spent three years making {name}."},
       {"{Subj} was directed by {value}.", "{Poss} director is {value}.",
        "Behind the camera was {value}.", "{Ref} was directed by {value}."}},
      {"release_year",
       "release year",
       [](DomainContext& c) { return year(c, 1962, 2023); },
       {"{name} premiered in {value}.", "{name} hit theaters in {value}.",
        "{name} came out in {value}.", "{value} was the year {name} was released."},
       {"{Subj} was released in {value}.", "{Ref} opened in {value}.",
        "Audiences first saw {obj} in {value}.", "{Subj} reached cinemas in {value}."}},
      {"runtime",
       "runtime",
       [](DomainContext& c) { return fmt::format("{} minutes", c.rng.range(78, 189)); },
       {"{name} runs {value}.", "{name} has a running time of {value}.",
        "{name} clocks in at {value}.", "The theatrical cut of {name} lasts {value}."},
       {"{Subj} lasts {value}.", "{Poss} runtime is {value}.", "{Ref} runs for {value}.",
        "The running time is {value}."}},
      {"box_office",
       "box office gross",
       [](DomainContext& c) { return millions(c, 1, 480); },
       {"{name} grossed {value} worldwide.", "{name} earned {value} at the box office.",
        "Ticket sales for {name} totaled {value}.", "Worldwide, {name} took in {value}."},
       {"{Subj} took in {value} at the box office.", "{Poss} worldwide gross reached {value}.",
        "{Ref} made {value} in ticket sales.", "The box office total came to {value}."}},
      {"genre",
       "genre",
       [](DomainContext& c) { return c.rng.pick(kGenres); },
       {"{name} is a film in the {value} genre.", "Critics file {name} under {value}.",
        "{name} belongs to the {value} genre.",
        "Fans of {value} will find plenty to like in {name}."},
       {"{Poss} genre is {value}.", "{Ref} is usually shelved under {value}.",
        "{Subj} sits squarely in the {value} genre.", "Video stores list {obj} under {value}."}},
      {"lead_actor",
       "lead actor",
       [](DomainContext& c) { return c.names.person().full(); },
       {"{name} stars {value}.", "{value} plays the lead in {name}.",
        "The lead role in {name} went to {value}.", "{value} carries {name} in the central role."},
       {"{Subj} stars {value} in the lead role.", "{Poss} star is {value}.",
        "{Ref} is carried by {value}.", "The lead is played by {value}."}},
      {"studio",
       "studio",
       [](DomainContext& c) { return c.pooled(c.studios, 5, [&] { return c.names.studio(); }); },
       {"{name} was produced by {value}.", "{value} produced {name}.",
        "{name} is a {value} production.", "{value} financed and produced {name}."},
       {"{Subj} was made at {value}.", "{Poss} studio is {value}.", "{Ref} came out of {value}.",
        "The producing studio was {value}."}},
  };
  return d;
}

}  // namespace

std::string DomainContext::pooled(std::vector<std::string>& pool, size_t size,
                                  const std::function<std::string()>& make) {
  // Grow the pool until it is full, then reuse: a few shared values keep the task honest
  // (the value alone does not identify the record).
  if (pool.size() < size && (pool.empty() || rng.chance(0.6))) pool.push_back(make());
  return rng.pick(pool);
}

const std::vector<DomainSpec>& text2json_domains() {
  static const std::vector<DomainSpec> domains = {products(), medical(), organizations(), movies()};
  return domains;
}

const DomainSpec& text2json_domain(const std::string& id) {
  for (const DomainSpec& d : text2json_domains()) {
    if (d.id == id) return d;
  }
  fail("unknown Text2JSON domain '{}' (known: products, medical, organizations, movies)", id);
}

const std::vector<std::string>& indirect_templates() {
  static const std::vector<std::string> t = {
      "{name} and {other} share the same {label}.",
      "As for {label}, {name} is identical to {other}.",
      "When it comes to {label}, {name} matches {other} exactly.",
      "{name} has exactly the same {label} as {other}.",
  };
  return t;
}

}  // namespace kvo
