// Quantizers for KV policies' stores (landmarks, offloaded K/V), built from spec strings with
// the defaults the KV policies apply (see kv_spec.h), plus the exact "f32" store of the CPU
// reference (4 bytes/value, encode = copy).
#pragma once
#include <cstdint>
#include <string>

#include "quant/quantizer.h"

namespace kvo {

// Throws kvo::Error "<flag>: ..." when `spec` is neither "f32" nor a valid quantizer spec.
void validate_store_spec(const std::string& spec, const std::string& flag);

// The quantizer for `spec` ("f32" or a quant/spec.h spec). A higgs spec without group= gets
// `default_group`, also inside a residual spec.
quant::QuantizerPtr make_store_quantizer(const std::string& spec, int64_t default_group);

// The default HIGGS group of landmarks and offloaded K/V (kv_spec.h): one head, head_dim rounded
// up to a power of two, at least 64. Per-head records let a decode step fetch only the (token,
// head) pairs it selected; a group spanning the KV heads (group=1024 on Llama-3.1-8B) fetches
// a whole token for each selected pair (bench/RESULTS.md, issue 5).
int64_t head_group(int64_t head_dim);

// Whether a store record covers all KV heads of a token (HIGGS whose Hadamard group is wider
// than one head) instead of one (token, head) pair.
bool record_spans_heads(const quant::Quantizer& q, int64_t head_dim);

}  // namespace kvo
