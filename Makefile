# The README's commands. `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := poppler-utils redis-server postgresql fonts-dejavu-core fonts-liberation chromium chromium-driver
# torch first, pinned to the CPU wheel: an unpinned torch would pull gigabytes of CUDA packages.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test install system-deps lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: system-deps $(VENV)/.installed

# Debian packages the pipeline and its tests run: poppler (PDF rendering), redis, postgresql.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: install
	$(VENV)/bin/quire run samples/ --out demo-out
	@echo; echo "--- demo-out/sample-letter.txt ---"; cat demo-out/sample-letter.txt

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check pipeline workers tests

bench: install
	$(PY) bench/bench_render_memory.py
	$(PY) bench/bench_segment.py

clean:
	rm -rf $(VENV) demo-out quire-data
