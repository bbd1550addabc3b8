#!/usr/bin/env bash
# Go on training Quire's default model on a lent GPU (the `device` tool), then pack it to come back.
#
# Runs ON the GPU machine, in the repository root, for at most MINUTES of training (a device call
# may last 10 minutes: give it 8). Training stops on SIGTERM at the end of a step and saves its
# checkpoint; the model folder is then packed into $OUT as model.tar.partNN (15 MiB each, under
# the tool's 16 MiB per file), with train.log beside it.
#
#   here, once:          .venv/bin/python bench/pack_training_assets.py    # fonts, words: 12 MB packed
#   each device call:    bash bench/device_train.sh 8        (carry: [".train-assets.tar.xz", ".whl"])
#   a session's first:   bash bench/device_checks.sh && bash bench/device_train.sh 3   (and ".whl")
#   here, after each:    bash bench/device_unpack.sh FILES_AT           (the reply's files_at)
#
# The next call sends the unpacked model with the working tree, so it resumes where this one
# stopped, on a warm machine or a fresh one. Arguments after MINUTES go to pipeline.training.train
# and override the defaults below. Also runs on a CPU for a dry run: PYTHON=.venv/bin/python.
#
# A new, larger model from scratch instead (`--size base`: 48 px lines, 12.8M parameters; see
# bench/bench_model_sizes.py) in its own folder, so the shipped one is left alone:
#   QUIRE_DEVICE_MODEL=models/quire-line-base bash bench/device_train.sh 8 --size base --steps 20000
# device_unpack.sh puts it back under the same name in models/, where the next call resumes it.
# Or grow the shipped model to lines 48 px tall (`--size mid`: every weight fits), in the device's
# ignored runs/, which stays between calls on a warm machine (a second folder in models/ would push
# the working tree past the tool's 64 MiB); session 34's command, three calls of 7-8 minutes:
#   QUIRE_DEVICE_MODEL=runs/quire-line-mid bash bench/device_train.sh 8 --model quire-line-v1 \
#     --size mid --steps 8000 --lr 3e-4 --warmup 300 --seed 34
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:?usage: bench/device_train.sh MINUTES [train arguments]}"
shift
PY="${PYTHON:-python3}"  # on the GPU machine, the python3 that holds CUDA torch and transformers
OUT="${OUT:-runs/device-out}"
MODEL_DIR="${QUIRE_DEVICE_MODEL:-models/quire-line-v1}"
source bench/device_assets.sh
export PYTHONUNBUFFERED=1
# The GPU image lacks pydantic-settings (pipeline.config needs it): the carried wheels, as in
# device_checks.sh, which runs in its own shell and so cannot lend this one its PYTHONPATH.
if ! "$PY" -c "import pydantic_settings" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ ! -d "$QUIRE_TRAIN_ASSETS/fonts" ]; then
  echo "no $QUIRE_TRAIN_ASSETS/fonts: run bench/pack_training_assets.py here and carry .train-assets.tar.xz" >&2
  exit 2
fi
mkdir -p "$OUT"
# What the run relies on, first: a missing piece then costs seconds of the lease, not minutes.
"$PY" -c "import torch, transformers, tokenizers, cv2, PIL, tqdm
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
print(f'torch {torch.__version__} (GPU: {gpu}), transformers {transformers.__version__}, '
      f'tokenizers {tokenizers.__version__}, opencv {cv2.__version__}, pillow {PIL.__version__}')"
# Making lines, not the GPU step, most likely sets the pace: one data worker renders about 280
# lines/s on a dev-2c core (session 25's recipe), and 14 workers on the H100 machine gave
# 1,600-2,000 lines/s at batch 256 (session 25; not yet confirmed by varying the workers). So
# every core but the trainer's makes lines.
WORKERS=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
# The same run as bench/train_default_model.sh (the schedule and head shape must match to resume),
# with GPU batches: 8x the lines per step, a cosine stretched to 61,000 steps.
status=0
timeout -s TERM -k 120 "${MINUTES}m" "$PY" -m pipeline.training.train \
  --out "$MODEL_DIR" --model new --data synthetic --ink-cut 1.0 \
  --steps 61000 --batch-size 256 --lr 7e-4 --warmup 300 \
  --val-every 250 --log-every 25 --val-lines 200 --curriculum-lines 50000 --ctc-frames 2 \
  --decoding rescore --ema-decay 0.999 --save-every-s 180 --num-workers "$WORKERS" --threads 2 \
  --seed 1 --no-progress "$@" > "$OUT/train.log" 2>&1 || status=$?
# 124: stopped by the timeout, as planned (the checkpoint is saved on SIGTERM).
[ "$status" = 0 ] || [ "$status" = 124 ] || echo "training exited with status $status" >&2
tail -n 5 "$OUT/train.log"
tar -C "$(dirname "$MODEL_DIR")" -cf - "$(basename "$MODEL_DIR")" | split -b 15m -d - "$OUT/model.tar.part"
ls -l "$OUT"
