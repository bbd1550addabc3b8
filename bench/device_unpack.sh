#!/usr/bin/env bash
# Put the model that bench/device_train.sh packed on the GPU machine back into models/ here.
# Usage: bash bench/device_unpack.sh FILES_AT   (the device reply's files_at folder)
# The folder it replaces is kept in runs/ until the next unpack; train.log goes to runs/ too.
set -euo pipefail
cd "$(dirname "$0")/.."
FROM="${1:?usage: bench/device_unpack.sh FILES_AT}"
FROM="$(cd "$FROM" && pwd)"
parts=("$FROM"/model.tar.part*)
[ -e "${parts[0]}" ] || { echo "no model.tar.part* in $FROM" >&2; exit 2; }
mkdir -p runs
rm -rf runs/unpack && mkdir runs/unpack
cat "${parts[@]}" | tar -C runs/unpack -xf -
name="$(ls runs/unpack)"
[ -f "runs/unpack/$name/model.safetensors" ] || { echo "the parts hold no model folder" >&2; exit 2; }
rm -rf "runs/previous-$name"
[ -d "models/$name" ] && mv "models/$name" "runs/previous-$name"
mv "runs/unpack/$name" "models/$name"
# The GPU machine's transformers writes the configs with its own default fields; write them back as
# this machine's does, so git shows only what training changed.
"${PYTHON:-.venv/bin/python}" -c "
import sys, pipeline.line_encoder
from transformers import GenerationConfig, VisionEncoderDecoderConfig
for kind in (VisionEncoderDecoderConfig, GenerationConfig):
    kind.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1])" "models/$name"
[ -f "$FROM/train.log" ] && cat "$FROM/train.log" >> runs/device-train.log
grep -h '"cer' "$FROM/train.log" 2>/dev/null | tail -n 3 || true
echo "models/$name is now the model trained on the device (the one it replaced: runs/previous-$name)"
