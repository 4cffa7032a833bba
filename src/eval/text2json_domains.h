// The four Text2JSON domains of the paper (products, medical professionals, organizations,
// movies) as data: attributes with value generators and many phrasings, entity introductions,
// attribute-free remarks, and paragraphs about entities of other categories (distractors).
//
// Template slots: {name} the entity's full name; {value} the attribute value; {Subj}/{subj},
// {Poss}/{poss}, {obj} pronouns; {Ref}/{ref} a short reference ("the device", "Dr. Vale");
// {other} another entity of the category; {label} the attribute's label; and fillers that name
// entities of other categories: {person} {city} {company} {store} {title} {hospital} {drug}
// {journal} {product} {year} {num} {money}.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "eval/names.h"
#include "eval/rng.h"

namespace kvo {

// Per-sample state shared by value generators: pools make some values recur naturally (two
// doctors at one hospital) while every name stays fictional.
struct DomainContext {
  Rng& rng;
  NameBank& names;
  std::vector<std::string> cities, hospitals, schools, studios;
  std::string pooled(std::vector<std::string>& pool, size_t size,
                     const std::function<std::string()>& make);
};

struct AttributeSpec {
  std::string key;    // JSON key in the gold answer, e.g. "battery_life"
  std::string label;  // words used in the instruction, e.g. "battery life"
  std::function<std::string(DomainContext&)> value;
  std::vector<std::string> named;   // sentences that contain {name}
  std::vector<std::string> follow;  // sentences that refer back with a pronoun or {ref}
};

struct DomainSpec {
  std::string id;        // "products"
  std::string category;  // "product"
  std::string plural;    // "products"
  bool people = false;   // entities take he/she pronouns
  std::vector<AttributeSpec> attributes;
  std::vector<std::string> intros;       // introduce {name} without stating an attribute
  std::vector<std::string> returns;      // reopen a later paragraph: "Back to {name}."
  std::vector<std::string> refs;         // {ref} forms; "{last}" is the surname for people
  std::vector<std::string> remarks;      // attribute-free sentences about the entity
  std::vector<std::string> distractors;  // paragraphs about entities of other categories
  std::function<std::string(DomainContext&, PersonName*)> make_name;
};

const std::vector<DomainSpec>& text2json_domains();
const DomainSpec& text2json_domain(const std::string& id);  // kvo::Error for unknown ids

// Sentences that state a value only by reference to another entity with the same value.
const std::vector<std::string>& indirect_templates();

}  // namespace kvo
