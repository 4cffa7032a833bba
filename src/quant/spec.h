// The quantizer spec syntax, used wherever a quantizer is chosen (CLI flags, run configs):
//
//   spec     := family [ ":" key "=" value { "," key "=" value } ]
//   higgs    : d=<p> n=<points> [group=<h>, default 128]      e.g. higgs:d=4,n=256
//   uniform  : bits=<1..8> [group=<g>, default 64]            e.g. uniform:bits=2,group=64
//   fp8, bf16: no keys
//   residual : m=<count> meta=<spec> res=<spec>
//              e.g. residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256
//
// A nested spec (meta=, res=) runs until the next residual key (",m=", ",meta=", ",res=") or
// may be wrapped in parentheses: residual:m=4,meta=(higgs:d=4,n=256),res=bf16.
// Unknown families, unknown or repeated keys, missing keys and bad values throw kvo::Error
// naming the offending part.
#pragma once
#include <string>

#include "quant/quantizer.h"

namespace kvo::quant {

// A higgs spec without group= (top-level or nested in residual) gets `higgs_default_group`: the
// KV policies pass one head's width so a 64-dim head is not padded to a 128 group.
QuantizerPtr parse_quantizer(const std::string& spec, int higgs_default_group = 128);

}  // namespace kvo::quant
