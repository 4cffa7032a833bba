#!/usr/bin/env bash
# Issue 3 engine figures on the lent H200, run inside a pack's environment:
#   run(command="bash scripts/gpu-test exec .dev/gpu-e -- 'bash bench/engine/run_gpu.sh MODE'",
#       carry=[".dev/gpu-e"])
# MODE check: every CUDA test (ops, attention, sampling, recorded vs eager decode, oracles), the
#             CPU batch tests, then a short bench pass (roofline at 4K, 8K at batch 1 and 16).
# MODE bench: the 8B figures of bench/RESULTS.md in one run: decode roofline at 4K; prefill and
#             decode tok/s at 8K/32K/128K, batch 1 and the largest batch that fits, HF generate()
#             alongside (~6 min; every step bounded by `timeout`).
# MODE decode [HF_PROMPT]: decode-path tests (the recorded sparse policies too), the 4K/8K
#             roofline, the decode-step bench
#             (CudaDecodeStepBench: each GEMM's bandwidth, the attention, 32 layers with and
#             without the small ops), HF generate() at its largest batch for HF_PROMPT tokens
#             (default 32768). A pack may carry variants/{kvoffload,kvoffload_tests}.NAME.xz,
#             builds with one change each (A/B of the decode step): each runs the step's tests,
#             the 4K roofline and the step bench. Every step is bounded by `timeout` (180 s calls).
# Logs go to $OUT (or ./out); each step appends, so a run cut short still returns what it did.
set -uo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-check}
OUT=${OUT:-out}
mkdir -p "$OUT"
CFG=bench/configs/llama-3.1-8b.json
K=$G/kvoffload
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader \
  > "$OUT/machine.txt" 2>&1
step() { echo "== $(date -u +%T) $*" | tee -a "$OUT/$MODE.log"; }

if [[ $MODE == check ]]; then
  step tests
  $G/kvoffload_tests --gtest_filter='*Cuda*:*BatchGenerator*:*RandomWeights*:CpuOps*:*Sampler*:*OracleLogits*:-*CudaAttentionBench*:*Higgs*' \
    > "$OUT/tests.log" 2>&1
  grep -E '^\[  (PASSED|FAILED|SKIPPED) |tests ran|sampling T=' "$OUT/tests.log" | tee -a "$OUT/$MODE.log"
  step "bench 8B: roofline 4K + 8K, batch 1"
  $K bench --random-weights $CFG --device cuda --prompt-tokens 4096,8192 --gen 64 --roofline 2>&1 | tee -a "$OUT/$MODE.log"
  step "bench 8B: 8K eager vs graphs, batch 16"
  $K bench --random-weights $CFG --device cuda --prompt-tokens 8192 --gen 32 --batch 16 --eager 2>&1 | tee -a "$OUT/$MODE.log"
  $K bench --random-weights $CFG --device cuda --prompt-tokens 8192 --gen 32 --batch 16 2>&1 | tee -a "$OUT/$MODE.log"
  step "bench 8B: impossible batch"
  $K bench --random-weights $CFG --device cuda --prompt-tokens 131072 --gen 8 --batch 64 2>&1 | tail -2 | tee -a "$OUT/$MODE.log"
  step "hf 8K batch 1"
  python3 bench/engine/hf_generate.py --config $CFG --prompt-tokens 8192 --gen 32 2>&1 | grep "^{" | tee -a "$OUT/$MODE.log"
  step done
  exit 0
fi

if [[ $MODE == decode ]]; then
  step "decode-path tests"
  timeout 120 $G/kvoffload_tests --gtest_filter='CudaOps*:CudaStepOps*:*CudaAttention.*:*CudaOracle*:CudaBatch*:CudaSampling*:CudaSparseRecorded*:CudaSparseFullBudget*:*/CudaSparse.*:CudaSmolLM2*:BenchCli*:BatchGenerator*' \
    > "$OUT/tests.log" 2>&1
  grep -E '^\[  (PASSED|FAILED|SKIPPED) |tests ran' "$OUT/tests.log" | tee -a "$OUT/$MODE.log"
  step "ours: roofline 4K/8K, batch 1"
  timeout 45 $K bench --random-weights $CFG --device cuda --prompt-tokens 4096,8192 --gen 64 --roofline 2>&1 | tee -a "$OUT/$MODE.log"
  step "decode-step bench"
  KVO_CUDA_BENCH=1 timeout 30 $G/kvoffload_tests --gtest_filter='CudaDecodeStepBench*' 2>&1 | grep -E 'plain read|matvec|attention|layers|FAILED' | tee -a "$OUT/$MODE.log"
  for packed in "$G"/variants/kvoffload.*.xz; do
    [[ -e $packed ]] || continue
    name=${packed##*/kvoffload.}; name=${name%.xz}
    mkdir -p /tmp/variant && xz -dc "$packed" > /tmp/variant/kvoffload && xz -dc "$G/variants/kvoffload_tests.$name.xz" > /tmp/variant/kvoffload_tests
    chmod +x /tmp/variant/*
    step "variant $name: step tests, 4K roofline, step bench"
    timeout 30 /tmp/variant/kvoffload_tests --gtest_filter='CudaOps.Matmul*:CudaStepOps*:CudaBatch*' 2>&1 | grep -E '^\[  (PASSED|FAILED) ' | tee -a "$OUT/$MODE.log"
    timeout 30 /tmp/variant/kvoffload bench --random-weights $CFG --device cuda --prompt-tokens 4096 --gen 64 --roofline 2>&1 | grep -E '^ +4096' | tee -a "$OUT/$MODE.log"
    KVO_CUDA_BENCH=1 timeout 20 /tmp/variant/kvoffload_tests --gtest_filter='CudaDecodeStepBench*' 2>&1 | grep -E 'plain read|matvec|attention|layers|FAILED' | tee -a "$OUT/$MODE.log"
  done
  step "hf: ${2:-32768} at the largest batch"
  timeout 70 python3 bench/engine/hf_generate.py --config $CFG --prompt-tokens ${2:-32768} --batch 0 --gen 16 2>&1 | tail -2 | tee -a "$OUT/$MODE.log"
  step done
  exit 0
fi

# MODE bench. Ours at the largest batch prefills one prompt per length and copies its KV state
# into the other sequences (--shared-prompt): B prefills of 128K would not fit the call.
step "ours: roofline 4K, then 8K/32K/128K at batch 1"
timeout 90 $K bench --random-weights $CFG --device cuda --prompt-tokens 4096,8192,32768,131072 --gen 64 --roofline 2>&1 | tee -a "$OUT/$MODE.log"
step "ours: 8K/32K/128K at the largest batch (one prefill per length, its KV copied)"
timeout 120 $K bench --random-weights $CFG --device cuda --prompt-tokens 8192,32768,131072 --batch 0 --shared-prompt --gen 32 2>&1 | tee -a "$OUT/$MODE.log"
step "hf: 8K/32K/128K at batch 1"
timeout 100 python3 bench/engine/hf_generate.py --config $CFG --prompt-tokens 8192,32768,131072 --gen 32 2>&1 | grep "^{" | tee -a "$OUT/$MODE.log"
step "hf: 8K/32K/128K at the largest batch"
timeout 200 python3 bench/engine/hf_generate.py --config $CFG --prompt-tokens 8192,32768,131072 --batch 0 --gen 16 2>&1 | grep "^{" | tee -a "$OUT/$MODE.log"
step done
