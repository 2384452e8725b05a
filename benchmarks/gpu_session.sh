#!/usr/bin/env bash
# One time-guarded GPU session (about 15 minutes of device time in all): CUDA tests, then eager fp32
# against the fast path for every model's paper preset, results under ${OUT:-benchmarks/results}.
#
#   OUT=/somewhere bash benchmarks/gpu_session.sh
#
# Each part has its own time limit, so a slow part cannot eat the next one's; what finished is kept.
set -uo pipefail
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '_' | tr -cd '[:alnum:]_-')"
gpu="${gpu:-gpu}"
py="${PYTHON:-python}"

timeout 240 "$py" -m pytest -q tests/test_cuda.py -p no:cacheprovider > "$out/cuda_tests_${gpu}.txt" 2>&1
echo "cuda tests: exit $? ($out/cuda_tests_${gpu}.txt)"

# every paper preset, eager fp32 against --fast (bf16 + compile + fused Adam), one round
timeout 420 "$py" benchmarks/bench_fast.py --device cuda \
    --rounds 1 --warmup 5 --steps 20 --out "$out/fast_${gpu}.json"
echo "fast-path benchmark: exit $? ($out/fast_${gpu}.json)"
