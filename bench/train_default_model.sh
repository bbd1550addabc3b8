#!/usr/bin/env bash
# Train (or resume) Quire's default line model models/quire-line-v1 on synthetic lines, detached.
# Resumes automatically from models/quire-line-v1/checkpoint; validation CER on the dev folders is measured only.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
VAL_DIR="${QUIRE_VAL_DIR:-/work/shared/data/dev}"
VAL_ARGS=()
[ -d "$VAL_DIR" ] && VAL_ARGS=(--val-dir "$VAL_DIR")
nohup setsid nice -n 10 .venv/bin/python -m pipeline.training.train \
  --out models/quire-line-v1 --model new --data synthetic \
  --steps 60000 --batch-size 32 --lr 5e-4 --warmup 300 \
  --val-every 500 --log-every 25 --val-lines 200 --curriculum-lines 150000 "${VAL_ARGS[@]}" \
  --save-every-s 600 --num-workers 1 --threads 2 --seed 0 \
  >> runs/train.log 2>&1 < /dev/null &
echo "training pid $! (log: runs/train.log)"
