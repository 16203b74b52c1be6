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

.PHONY: setup book test unit execute bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[book,test]"
	touch $@

setup: $(STAMP)

unit: setup
	$(BIN)/python -m pytest -q tests

test: setup
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python benchmarks/bench_dpo.py

clean:
	rm -rf _build .pytest_cache
