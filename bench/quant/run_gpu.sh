#!/usr/bin/env bash
# Quantization on a GPU machine: CUDA-vs-CPU agreement tests of the device quantizer API, then
# encode / score / decode throughput of each spec next to a plain read-bandwidth kernel of the
# same run.
# Usage: bench/quant/run_gpu.sh [BIN_DIR] [OUT_DIR]   (BIN_DIR holds kvoffload and
# kvoffload_tests, as a build folder's tests/ subfolder or flat as in a scripts/gpu-test pack;
# default build-gpu). Results: OUT_DIR/quant_tests.log, quant_bench.jsonl, quant_gpu.txt.
# (QuantStatsCli runs the CLI from its build folder, which a pack does not have: left out.)
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build-gpu}
OUT_DIR=${2:-out}
mkdir -p "$OUT_DIR"
TESTS=$BIN/kvoffload_tests
[[ -x $TESTS ]] || TESTS=$BIN/tests/kvoffload_tests
export KVOFFLOAD_DATA_DIR=${KVOFFLOAD_DATA_DIR:-$PWD/data}
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader | tee "$OUT_DIR/quant_gpu.txt"
"$TESTS" --gtest_filter='Hadamard*:Higgs*:Quant*:Residual*:Uniform*:Fp8*:NearestTable*:DeviceQuantizer*-QuantStatsCli*' \
  2>&1 | tee "$OUT_DIR/quant_tests.log"
: > "$OUT_DIR/quant_bench.jsonl"
for spec in "higgs:d=4,n=256" "higgs:d=2,n=256" "higgs:d=2,n=256,group=1024" "higgs:d=8,n=256" \
  "uniform:bits=2,group=64" "fp8" "residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256"; do
  "$BIN/kvoffload" quantize-stats --quantizer "$spec" --device cuda --bench --json \
    --samples 65536 | tee -a "$OUT_DIR/quant_bench.jsonl"
done
