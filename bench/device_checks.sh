#!/usr/bin/env bash
# The CUDA checks and GPU timings a session with a lent GPU (the `device` tool) should run first,
# in about 6 minutes, leaving the rest of its 10-minute call to bench/device_train.sh.
#
#   here, once:   .venv/bin/python bench/pack_training_assets.py && bash bench/device_wheels.sh
#   device call:  bash bench/device_checks.sh && bash bench/device_train.sh 3   (carry: [".train-assets.tar.xz", ".whl"])
#
# Runs ON the GPU machine, in the repository root: installs the carried wheels (pydantic-settings
# and its needs, which its image lacks), runs the GPU tests, then bench_stages.py (what caps a
# reader there) and bench_throughput.py (bf16 against fp32, two batch sizes). Each step has its
# own time limit, so a hang costs minutes, not the call; logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/device-out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "no wheels: run bench/device_wheels.sh here and carry .whl" >&2; exit 2; }
source bench/device_assets.sh
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# The repository's conftest starts servers the GPU machine lacks; the GPU tests need none of them.
timeout 150 python3 -m pytest -q --noconftest -p no:cacheprovider tests/unit/test_recognize_gpu.py \
  2>&1 | tee "$OUT/gpu_tests.log" | tail -n 3
# 200 s: with 60 it printed no stage (session 31), with 100 three of its ten rows (session 34).
timeout 200 python3 bench/bench_stages.py --device cuda --lines 2048 --batch-size 256 2>&1 \
  | grep -v "^\s*$" | tee "$OUT/stages.log" | tail -n 12
timeout 100 python3 bench/bench_throughput.py --device cuda --lines 2048 --batch-sizes 256 \
  --decode rescore,ctc --precision auto --repeat 1 2>&1 | grep -v "^\s*$" | tee "$OUT/throughput.log" | tail -n 10
exit 0  # the training that follows should run whatever the timings did
