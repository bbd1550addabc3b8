#!/usr/bin/env bash
# Train (or resume) Quire's default line model models/quire-line-v1 on synthetic lines, detached.
# Resumes automatically from models/quire-line-v1/checkpoint; validation CER on the dev folders is
# measured only, never trained on. If the process dies it is restarted from its last checkpoint
# (saved every 10 minutes), up to 20 times.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
# The cosine schedule's last step: past the checkpoint's step (68,000 since session 25's GPU run,
# whose schedule ended at 76,000), or the run ends at once. Raise it to train longer (a warm restart).
STEPS="${QUIRE_TRAIN_STEPS:-76000}"
VAL_DIR="${QUIRE_VAL_DIR:-../shared/data/dev}"
VAL_ARGS=""
[ -d "$VAL_DIR" ] && VAL_ARGS="--val-dir $VAL_DIR"
CMD=".venv/bin/python -m pipeline.training.train \
  --out models/quire-line-v1 --model new --data synthetic --ink-cut 1.0 \
  --steps $STEPS --batch-size 32 --lr 7e-4 --warmup 300 \
  --val-every 500 --log-every 25 --val-lines 200 --curriculum-lines 50000 --ctc-frames 2 --decoding rescore --ema-decay 0.999 $VAL_ARGS \
  --save-every-s 600 --num-workers 1 --threads 2 --seed 20"
nohup setsid nice -n 10 bash -c "for try in \$(seq 20); do $CMD && break; echo \"training exited (\$?); restarting from the checkpoint\"; sleep 10; done" \
  >> runs/train.log 2>&1 < /dev/null &
echo "training pid $! (log: runs/train.log)"
