#!/usr/bin/env bash
# Wheels the GPU machine (the `device` tool) lacks for recognition, fetched here for its Python 3.12.
#
# Training needs none of them; reading does: pipeline.config is built on pydantic-settings, which
# that machine's image does not hold, and it cannot fetch anything. Run once here, then carry
# `.whl` and begin the device command with:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# The versions are those pyproject.toml resolves to on the development machine.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo /.whl/ >> .git/info/exclude; }
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl pydantic==2.14.3 pydantic_core==2.50.4 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
  typing-inspection==0.4.5 annotated-types==0.8.0
ls -l .whl
