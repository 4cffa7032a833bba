#!/usr/bin/env bash
# Issue 5 figures on the lent H200 (KV offloading on the GPU), run inside a pack's environment:
#   run(command="bash scripts/gpu-test exec PACK -- 'bash bench/kv/run_gpu.sh MODE'",
#       carry=[PACK]), PACK made by `bash scripts/gpu-test pack BUILD PACK`
# MODE tests:   the CUDA sparse-policy tests (CUDA vs CPU, recorded batch steps vs eager, copies).
# MODE figures: 128K, the prompt prefilled once (--shared-prompt): yakv at its largest batch
#               (host-limited), dense at its largest (device-limited), yakv at 12 (how it
#               scales). 64 generated tokens: the first decode step records the CUDA graph
#               (seconds for 25 sequences x 32 layers x ~20 launches), which 63 steps amortize.
# MODE policy:  the gather alone (scattered 64/68/128/512-byte records, 1/4/25 gathers in
#               flight), then the policy-alone step timing at 32K (eager, one sequence:
#               selection and fetch without the model).
# MODE more:    32K: dense and yakv at their largest batch, yakv with records spanning the heads
#               (group=1024, DESIGN.md §3's store) and shadowkv at batch 1 (16 generated tokens).
# Every run has its own timeout, so one slow case cannot eat the call; logs go to $OUT (or ./out)
# and each step appends, so a run cut short still returns what it did.
set -uo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-tests}
OUT=${OUT:-out}
mkdir -p "$OUT"
CFG=bench/configs/llama-3.1-8b.json
SPANNING="--kv-store higgs:d=2,n=256,group=1024"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader \
  > "$OUT/machine.txt" 2>&1
free -g >> "$OUT/machine.txt" 2>&1
step() { echo "== $(date -u +%T) $*" | tee -a "$OUT/$MODE.log"; }
GEN=64
[[ $MODE == more ]] && GEN=16
# bench SECONDS KV-ARGS... : one kvoffload bench of the 8B shape, GEN generated tokens.
bench() {
  local limit=$1
  shift
  step "bench $*"
  timeout "$limit" "$G/kvoffload" bench --random-weights $CFG --device cuda --gen $GEN "$@" 2>&1 |
    tee -a "$OUT/$MODE.log"
  echo "(exit ${PIPESTATUS[0]})" | tee -a "$OUT/$MODE.log"
}

case $MODE in
  tests)
    timeout 40 "$G/kvoffload_tests" \
      --gtest_filter='*CudaSparse*:CudaGather*:CudaBatch*:CudaStep*:*CopyFrom*:-*Bench*' \
      > "$OUT/tests.log" 2>&1
    grep -E '^\[  (PASSED|FAILED|SKIPPED) |selections differ|gpu .* B \(layout' "$OUT/tests.log" |
      tee -a "$OUT/$MODE.log"
    ;;
  figures)
    bench 110 --kv yakv --prompt-tokens 131072 --batch 0 --shared-prompt
    bench 55 --kv dense --prompt-tokens 131072 --batch 0 --shared-prompt
    bench 60 --kv yakv --prompt-tokens 131072 --batch 12 --shared-prompt
    ;;
  policy)
    KVO_CUDA_BENCH=1 timeout 60 "$G/kvoffload_tests" \
      --gtest_filter='CudaGatherBench*:CudaSparseBench*' 2>&1 |
      grep -E '^bench|FAILED' | tee -a "$OUT/$MODE.log"
    ;;
  more)
    bench 30 --kv dense --prompt-tokens 32768 --batch 0 --shared-prompt
    bench 60 --kv yakv --prompt-tokens 32768 --batch 0 --shared-prompt
    bench 22 --kv yakv $SPANNING --prompt-tokens 32768
    bench 22 --kv shadowkv --prompt-tokens 32768
    ;;
esac
step done
