#!/usr/bin/env bash
# Issue 6 figures on the lent H200: SmolLM2-135M-Instruct on Text2JSON and the five contrast tasks
# at 2K, 4K and 8K prompts; dense vs shadowkv vs yakv (defaults) vs yakv with residual landmarks
# (1.5 bits: a 2-bit HIGGS meta-landmark per 4 tokens + 1-bit residuals). Runs inside a pack's
# environment once the default model is on the device (scripts/gpu-test model-split/model-join):
#   run(command="bash scripts/gpu-test model-join && bash scripts/gpu-test exec .dev/gpu -- \
#       'bash bench/eval/run_gpu.sh'", carry=[".dev/gpu", ".dev/model/p02", ".dev/model/sum"])
# LIMIT (default 5) samples per set. The 8K sets (8192 +- 5% prompt tokens) plus a 1024-token
# Text2JSON answer exceed SmolLM2's 8192-token context, so the run uses --context 10240 (RoPE past
# the trained range: the 8K column measures the methods there, not the model at its best).
# EVAL_SECONDS (default 3000) bounds the eval so the partial rows and report still come back (a
# rerun resumes).
# Output: $OUT/eval.tgz (rows, summary.json, report.html) and $OUT/eval.log (the table).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out}
LIMIT=${LIMIT:-5}
mkdir -p "$OUT"
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f $M ]] || { echo "no $M on this machine: bring it with scripts/gpu-test model-join"; exit 1; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/machine.txt" 2>&1
timeout "${EVAL_SECONDS:-3000}" $G/kvoffload eval -m $M --device cuda --context 10240 \
  --task text2json,niah_multikey,niah_multivalue,variable_tracking,frequent_words,json_kv \
  --lengths 2K,4K,8K --kv dense,shadowkv,yakv \
  --landmarks "higgs:d=4,n=256;residual:m=4,meta=higgs:d=4,n=256,res=higgs:d=8,n=256" \
  --limit "$LIMIT" --out "$OUT/eval" 2>&1 | tee "$OUT/eval.log"
$G/kvoffload report "$OUT/eval" 2>&1 | tail -1
tar czf "$OUT/eval.tgz" -C "$OUT" eval
