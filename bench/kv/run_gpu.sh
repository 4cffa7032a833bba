#!/usr/bin/env bash
# Issue 5 figures on the lent H200 (KV offloading on the GPU), run inside a pack's environment:
#   run(command="bash scripts/gpu-test exec .dev/gpu-s -- 'bash bench/kv/run_gpu.sh MODE'",
#       carry=[".dev/gpu-s"])
# MODE check:   the CUDA sparse-policy tests (CUDA vs CPU, recorded vs eager steps, copies), the
#               policy-alone step timing at 32K, then at 32K every method at batch 1 and dense and
#               yakv at their largest batch.
# MODE figures: the CUDA-vs-CPU agreement test, then 128K with the prompt prefilled once: dense
#               and shadowkv at their largest batch, yakv (and with per-head records) at 12, about
#               half its largest (host-limited; pinning ~4 GiB of copies per sequence is what takes
#               the time, and its step is PCIe-bound, so aggregate tok/s barely grows beyond);
#               each run prints the largest batch. 8 generated tokens.
# Every run has its own timeout, so one slow case cannot eat the call; logs go to $OUT (or ./out)
# and each step appends, so a run cut short still returns what it did.
set -uo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-check}
OUT=${OUT:-out}
mkdir -p "$OUT"
CFG=bench/configs/llama-3.1-8b.json
PERHEAD="--kv-store higgs:d=2,n=256,group=128"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader \
  > "$OUT/machine.txt" 2>&1
free -g >> "$OUT/machine.txt" 2>&1
step() { echo "== $(date -u +%T) $*" | tee -a "$OUT/$MODE.log"; }
GEN=16
[[ $MODE == figures ]] && GEN=8
# bench SECONDS KV-ARGS... : one kvoffload bench of the 8B shape, GEN generated tokens.
bench() {
  local limit=$1
  shift
  step "bench $*"
  timeout "$limit" "$G/kvoffload" bench --random-weights $CFG --device cuda --gen $GEN "$@" 2>&1 |
    tee -a "$OUT/$MODE.log"
  echo "(exit ${PIPESTATUS[0]})" | tee -a "$OUT/$MODE.log"
}

if [[ $MODE == check ]]; then
  step tests
  timeout 70 "$G/kvoffload_tests" \
    --gtest_filter='*CudaSparse*:CudaBatch*:CudaStep*:*CopyFrom*:-*Bench*' > "$OUT/tests.log" 2>&1
  grep -E '^\[  (PASSED|FAILED|SKIPPED) |selections differ|gpu .* B \(layout' "$OUT/tests.log" |
    tee -a "$OUT/$MODE.log"
  step "policy alone, 32K, eager"
  KVO_CUDA_BENCH=1 timeout 40 "$G/kvoffload_tests" --gtest_filter='CudaSparseBench*' 2>&1 |
    grep -E '^bench|FAILED' | tee -a "$OUT/$MODE.log"
  bench 22 --kv dense --prompt-tokens 32768
  bench 22 --kv yakv --prompt-tokens 32768
  bench 45 --kv yakv --prompt-tokens 32768 --batch 0 --shared-prompt
  bench 30 --kv dense --prompt-tokens 32768 --batch 0 --shared-prompt
  bench 22 --kv yakv $PERHEAD --prompt-tokens 32768
  bench 22 --kv shadowkv --prompt-tokens 32768
  step done
  exit 0
fi

step "CUDA vs CPU agreement"
timeout 15 "$G/kvoffload_tests" --gtest_filter='*CudaSparse.*' 2>&1 |
  grep -E '^\[  (PASSED|FAILED) |selections differ|gpu .* B \(layout' | tee -a "$OUT/$MODE.log"
bench 55 --kv dense --prompt-tokens 131072 --batch 0 --shared-prompt
bench 85 --kv yakv --prompt-tokens 131072 --batch 12 --shared-prompt
bench 85 --kv shadowkv --prompt-tokens 131072 --batch 0 --shared-prompt
bench 85 --kv yakv $PERHEAD --prompt-tokens 131072 --batch 12 --shared-prompt
step done
