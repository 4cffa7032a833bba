#!/usr/bin/env bash
# Quantization benchmark on a GPU machine: CUDA-vs-CPU agreement tests, then encode / score /
# decode throughput of each HIGGS spec next to a plain read-bandwidth kernel of the same run.
# Usage: bench/quant/run_gpu.sh [BIN_DIR] [OUT_DIR]   (BIN_DIR holds kvoffload and
# tests/kvoffload_tests; default build-gpu). Results: OUT_DIR/quant_bench.jsonl and .log.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build-gpu}
OUT_DIR=${2:-out}
mkdir -p "$OUT_DIR"
export KVOFFLOAD_DATA_DIR=${KVOFFLOAD_DATA_DIR:-$PWD/data}
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader | tee "$OUT_DIR/quant_gpu.txt"
"$BIN/tests/kvoffload_tests" --gtest_filter='Hadamard*:Higgs*:Quant*:Residual*:Uniform*:Fp8*' \
  2>&1 | tee "$OUT_DIR/quant_tests.log"
: > "$OUT_DIR/quant_bench.jsonl"
for spec in "higgs:d=4,n=256" "higgs:d=2,n=256" "higgs:d=2,n=256,group=1024" "higgs:d=8,n=256"; do
  "$BIN/kvoffload" quantize-stats --quantizer "$spec" --device cuda --bench --json \
    --samples 65536 | tee -a "$OUT_DIR/quant_bench.jsonl"
done
