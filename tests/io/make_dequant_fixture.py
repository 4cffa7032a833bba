#!/usr/bin/env python3
"""Writes tests/io/data/ggml_dequant_reference.json: random ggml blocks and their dequantized
values as computed by gguf-py (llama.cpp's Python GGUF package), an implementation independent
of ours. Run from the repository root: python3 tests/io/make_dequant_fixture.py
"""
import json
import pathlib

import importlib.metadata

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

# type -> (ggml type, bytes per block, byte offsets of f16 scales, blocks)
SPECS = {
    "Q4_0": (T.Q4_0, 18, [0], 8),
    "Q4_1": (T.Q4_1, 20, [0, 2], 8),
    "Q8_0": (T.Q8_0, 34, [0], 8),
    "Q4_K": (T.Q4_K, 144, [0, 2], 4),
    "Q6_K": (T.Q6_K, 210, [208], 4),
}

rng = np.random.default_rng(2024)
out = {"generator": f"gguf-py {importlib.metadata.version('gguf')}", "types": {}}
for name, (qtype, block_bytes, scale_offsets, nblocks) in SPECS.items():
    raw = rng.integers(0, 256, size=(nblocks, block_bytes), dtype=np.uint8)
    for off in scale_offsets:  # finite, moderate f16 scales instead of random bit patterns
        scales = (rng.standard_normal(nblocks) * 0.1).astype(np.float16)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(nblocks, 2)
    values = gguf.quants.dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
    out["types"][name] = {"hex": raw.tobytes().hex(), "values": [float(v) for v in values]}

path = pathlib.Path(__file__).parent / "data" / "ggml_dequant_reference.json"
path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
print(f"wrote {path}")
