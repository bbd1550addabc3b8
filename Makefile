# The README's commands. `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages: the pipeline needs poppler (PDF rendering) and a font; the tests also start
# redis, PostgreSQL and Chromium, encrypt a PDF with qpdf and parse the compose file.
RUN_PACKAGES := poppler-utils jbig2dec fonts-dejavu-core
TEST_PACKAGES := $(RUN_PACKAGES) fonts-liberation hershey-fonts-data redis-server postgresql qpdf chromium chromium-driver docker-compose
# What the synthetic-line generator draws from to train the default model (`make train-deps`):
# the word list, book passages (fortunes), the printed font families and every handwriting font
# the recipe names.
TRAIN_PACKAGES := wamerican fortunes hershey-fonts-data fonts-dejavu fonts-liberation fonts-freefont-ttf \
  fonts-noto-core fonts-urw-base35 fonts-texgyre fonts-crosextra-carlito fonts-crosextra-caladea \
  fonts-linuxlibertine fonts-dkg-handwriting fonts-bwht fonts-breip fonts-femkeklaver \
  fonts-dancingscript fonts-humor-sans fonts-ecolier-court fonts-klee fonts-kristi fonts-rufscript \
  fonts-sjfonts fonts-kaushanscript fonts-comic-neue fonts-yusei-magic fonts-havana fonts-lobster \
  fonts-leckerli-one
# Hands from texlive-fonts-extra (510 MB, 1.4 GB installed): train-deps downloads the package and
# copies only these into HAND_FONT_DIR, where fontconfig finds them.
TEXLIVE_FONTS := /usr/share/texlive/texmf-dist/fonts
TEXLIVE_HANDS := opentype/public/miama/miama.otf opentype/public/qualitype/QTHandwriting.otf \
  opentype/public/qualitype/QTMerryScript.otf opentype/public/qualitype/QTBrushStroke.otf \
  type1/public/frcursive/frcr10.pfb type1/public/frcursive/frcsl10.pfb \
  type1/public/frcursive/frcbx10.pfb type1/public/calligra-type1/callig15.pfb \
  type1/public/brushscr/BrushScriptX-Italic.pfa type1/public/augie/augie___.pfb
HAND_FONT_DIR := /usr/local/share/fonts/quire-texlive
# apt-get and installing into /usr need root: sudo when not root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# torch first, pinned to the CPU wheel: an unpinned torch would pull gigabytes of CUDA packages.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test install system-deps train-deps language-model lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Installs the missing ones among PACKAGES with apt-get (sudo when not root).
system-deps:
	@# dpkg -s also answers 0 for a package removed but not purged: ask for its status instead.
	@missing=""; for p in $(PACKAGES); do \
	  [ "$$(dpkg-query -W -f='$${Status}' $$p 2>/dev/null)" = "install ok installed" ] || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: install
	@$(MAKE) --no-print-directory system-deps PACKAGES="$(RUN_PACKAGES)"
	$(VENV)/bin/quire run samples/sample-letter.pdf --out demo-out
	@echo; echo "--- demo-out/sample-letter.txt ---"; cat demo-out/sample-letter.txt

test: install
	@$(MAKE) --no-print-directory system-deps PACKAGES="$(TEST_PACKAGES)"
	$(PY) -m pytest -q

train-deps:
	@$(MAKE) --no-print-directory system-deps PACKAGES="$(TRAIN_PACKAGES)"
	@set -e; if [ ! -f $(HAND_FONT_DIR)/augie___.pfb ]; then \
	  echo "copying the hands of texlive-fonts-extra into $(HAND_FONT_DIR)"; \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; chmod 755 $$tmp; \
	  $(SUDO) apt-get update -qq; \
	  (cd $$tmp && apt-get download -qq texlive-fonts-extra 2>/dev/null && dpkg-deb -x texlive-fonts-extra_*.deb x); \
	  $(SUDO) install -d $(HAND_FONT_DIR); \
	  for f in $(TEXLIVE_HANDS); do $(SUDO) install -m 644 $$tmp/x$(TEXLIVE_FONTS)/$$f $(HAND_FONT_DIR)/; done; \
	  $(SUDO) fc-cache -f $(HAND_FONT_DIR); \
	fi

# Rebuild the shipped model's character language model from the synthetic corpus's text.
language-model: install train-deps
	$(VENV)/bin/quire build-lm models/quire-line-v1

# mypy (from the test extra) reads its files and settings from pyproject.toml's [tool.mypy].
lint: install
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check pipeline workers tests bench migrations
	$(PY) -m mypy

bench: install
	$(PY) bench/bench_render_memory.py
	$(PY) bench/bench_segment.py
	$(PY) bench/bench_vs_tesseract.py

clean:
	rm -rf $(VENV) demo-out quire-data
