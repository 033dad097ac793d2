#!/usr/bin/env bash
# Record GPU reference traces and results, and check the CUDA paths, on a machine with an NVIDIA GPU.
#   tests/benchmarks/gpu_reference.sh OUT_DIR        (from the repository root, with the engine's dependencies)
# Writes gpu-trace-bfloat16.json, gpu-trace-float32.json and gpu-{roofline,energy,prefill,batch}.json to OUT_DIR
# and prints the timing-honesty check, the instrumented loop against model.generate, and each finding.
# A step that fails is reported and the next one still runs; the exit status counts the failed steps.
set -uo pipefail
OUT=${1:?usage: tests/benchmarks/gpu_reference.sh OUT_DIR}
PROMPT="Write a long story about a chef who cooks soup."
failed=0
step() { echo; echo "== $*"; "$@" || { echo "!! failed: $*"; failed=$((failed + 1)); }; }

step nvidia-smi --query-gpu=name,driver_version,memory.total,power.draw,clocks.max.sm --format=csv
step python3 -m engine info --device cuda
step python3 tests/benchmarks/cuda_timing_check.py
for dtype in bfloat16 float32; do
  step python3 -m engine trace --device cuda --dtype "$dtype" --prompt "$PROMPT" --max-new-tokens 96 --ignore-eos \
    --out "$OUT/gpu-trace-$dtype.json"
done
step python3 -m engine bench --device cuda --new-tokens 64 --rounds 3
step python3 -m engine experiment roofline --device cuda --out "$OUT/gpu-roofline.json"
step python3 -m engine experiment energy --device cuda --out "$OUT/gpu-energy.json"
step python3 -m engine experiment prefill --device cuda --out "$OUT/gpu-prefill.json"
step python3 -m engine experiment batch --device cuda --out "$OUT/gpu-batch.json"
echo; echo "failed steps: $failed"
exit "$failed"
