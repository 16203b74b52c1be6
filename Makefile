# The two commands a newcomer needs: `make book` (build the website) and `make test` (run every test).
# Both create the virtualenv in .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch first, pinned: an unpinned torch on a clean machine pulls GBs of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.dpolib-installed

# Same settings when outputs are stored and when nbval re-checks them.
export TQDM_DISABLE := 1
export PYTHONHASHSEED := 0
export OMP_NUM_THREADS := 1

.PHONY: setup book test unit execute bench clean nbval browser mathjax

# The website: MathJax served by the book itself (npm, pinned in package-lock.json), copied into
# _mathjax/ (git-ignored) by tools/vendor_mathjax.py; chapter notebooks in chapters/.
NPM ?= npm
MATHJAX := _mathjax/mathjax/tex-mml-chtml.js
NOTEBOOKS ?= $(sort $(wildcard chapters/*.ipynb))
JB_STRICT := -W -n --keep-going
NBVAL_FLAGS := --nbval --nbval-current-env --nbval-cell-timeout=300 --nbval-sanitize-with tests/nbval_sanitize.cfg

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[book,test]"
	touch $@

setup: $(STAMP)

unit: setup
	$(BIN)/python -m pytest -q tests

# Every check: unit tests, stored notebook outputs (nbval, strict), the strict book build from a
# clean _build, then every built page in headless Chromium.
test: setup
	$(BIN)/python -m pytest -q tests -m "not browser"
	$(MAKE) --no-print-directory nbval
	$(MAKE) --no-print-directory book
	$(MAKE) --no-print-directory browser

# Re-run every chapter and compare with its stored outputs (sanitized: ids, base64 images, addresses).
nbval: setup
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "nbval: no chapter notebooks in chapters/ yet, nothing to check"
else
	$(BIN)/python -m pytest -q -p no:cacheprovider $(NBVAL_FLAGS) $(NOTEBOOKS)
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

clean:
	rm -rf _build .pytest_cache _mathjax
