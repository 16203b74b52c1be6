# The two commands a newcomer needs: `make book` (build the website) and `make test` (run every test).
# Both create the virtualenv in .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch first, pinned: an unpinned torch on a clean machine pulls GBs of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
UV_SPEC ?= uv==0.13.9
STAMP := $(VENV)/.dpolib-installed
# Exact versions CI last passed with (regenerate: make constraints). pyproject.toml keeps loose
# ranges for readers' own environments; make installs with these so a new release of Sphinx,
# myst-nb or nbval cannot break the two commands overnight.
CONSTRAINTS := constraints.txt

# Same settings when outputs are stored and when nbval re-checks them.
export TQDM_DISABLE := 1
export PYTHONHASHSEED := 0
export OMP_NUM_THREADS := 1
# Nothing is downloaded at run time: transformers and TRL must never reach for a model hub.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup book test checks site nbval-other-odd nbval-other-even unit execute bench clean nbval nbval-other browser mathjax lint typecheck constraints

# The website: MathJax served by the book itself (npm, pinned in package-lock.json), copied into
# _mathjax/ (git-ignored) by tools/vendor_mathjax.py; chapter notebooks in chapters/.
NPM ?= npm
MATHJAX := _mathjax/mathjax/tex-mml-chtml.js
NOTEBOOKS ?= $(sort $(wildcard chapters/*.ipynb))
JB_STRICT := -W -n --keep-going
NBVAL_FLAGS := --nbval --nbval-current-env --nbval-cell-timeout=300 --nbval-sanitize-with tests/nbval_sanitize.cfg
# Another machine's arithmetic, reproduced on this one: PyTorch's generic kernels, oneMKL's SSE4.2
# path and two threads (see CONTRIBUTING.md). Stored outputs must pass under both settings.
OTHER_MACHINE := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 OMP_NUM_THREADS=2

# pip installs torch (it finds the local CPU wheel; uv would not) and uv; uv then installs the
# rest, the same versions ~7x faster than pip (it keeps the installed torch, which satisfies every
# range). Where uv cannot reach the registry, pip does the same install.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" "$(UV_SPEC)"
	$(BIN)/uv pip install -q --python $(BIN)/python -c $(CONSTRAINTS) -e ".[book,test,hf]" \
	  || $(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[book,test,hf]"
	touch $@

setup: $(STAMP)

# The unit tests (the browser tests need a built site: `make browser`).
unit: setup
	$(BIN)/python -m pytest -q tests -m "not browser"

# Every check: formatting, lint and types; unit tests; stored notebook outputs (nbval, strict)
# under this machine's kernels with one thread and under another machine's with two; the strict
# book build from a clean _build (it renders the stored outputs), then every built page in
# headless Chromium. The checks are independent, so they run side by side, longest first
# (TEST_JOBS at a time: four keep CI's two cores busy to the end, the other-kernels nbval
# split in two halves of the chapters); each one's output is printed whole when it ends (-O).
TEST_JOBS ?= 4
test: setup
	$(MAKE) --no-print-directory -j$(TEST_JOBS) -O checks

checks: nbval-other-odd nbval-other-even unit nbval lint typecheck site

# The chapters at odd and at even places of NOTEBOOKS (about the same time each).
ODD_NOTEBOOKS = $(shell printf '%s\n' $(NOTEBOOKS) | awk 'NR % 2 == 1')
EVEN_NOTEBOOKS = $(shell printf '%s\n' $(NOTEBOOKS) | awk 'NR % 2 == 0')

nbval-other-odd: setup
	$(MAKE) --no-print-directory nbval-other NOTEBOOKS="$(ODD_NOTEBOOKS)"

nbval-other-even: setup
	$(MAKE) --no-print-directory nbval-other NOTEBOOKS="$(EVEN_NOTEBOOKS)"

site: setup
	$(MAKE) --no-print-directory book
	$(MAKE) --no-print-directory browser

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy dpolib

# Re-run every chapter and compare with its stored outputs (sanitized: ids, base64 images, addresses).
nbval: setup
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "nbval: no chapter notebooks in chapters/ yet, nothing to check"
else
	$(BIN)/python -m pytest -q -p no:cacheprovider $(NBVAL_FLAGS) $(NOTEBOOKS)
endif

nbval-other: setup
ifneq ($(strip $(NOTEBOOKS)),)
	$(OTHER_MACHINE) $(BIN)/python -m pytest -q -p no:cacheprovider $(NBVAL_FLAGS) $(NOTEBOOKS)
endif

browser: setup
	$(BIN)/python -m pytest -q -m browser tests/test_site.py

# `npm ci` when node_modules lacks the pinned MathJax; then copy what the pages load into _mathjax/.
node_modules/mathjax/package.json: package-lock.json
	$(NPM) ci --no-audit --no-fund
	touch $@

$(MATHJAX): node_modules/mathjax/package.json tools/vendor_mathjax.py
	$(BIN)/python tools/vendor_mathjax.py

mathjax: setup $(MATHJAX)

# The website, strictly (any warning, notebook error or stderr output fails), from a clean _build.
book: setup $(MATHJAX)
	rm -rf _build
	$(BIN)/jupyter-book build . $(JB_STRICT)

# Regenerate the stored outputs of the chapters in place (same environment as nbval: see the
# exports above), then strip noisy metadata. One notebook: make execute NOTEBOOKS=chapters/02_...ipynb
execute: setup
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "execute: no chapter notebooks in chapters/ yet"
else
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=300 $(NOTEBOOKS)
	$(BIN)/nbstripout --keep-output --keep-count --extra-keys "metadata.widgets cell.metadata.execution" $(NOTEBOOKS)
endif

# The student edition of the chapters, without solutions (stubs raise NotImplementedError), in student/.
.PHONY: student
student: setup
	$(BIN)/python tools/student_edition.py chapters student

bench: setup
	$(BIN)/python benchmarks/bench_dpo.py

# Pin what CI passed with (constraints.txt and environment.yml; torch stays TORCH_SPEC's).
constraints: setup
	$(BIN)/python tools/pins.py --write

clean:
	rm -rf _build .pytest_cache _mathjax
