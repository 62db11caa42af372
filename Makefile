# Two entry points: `make demo` (set up, then run the end-to-end demo on embedded defaults) and
# `make test` (set up, start a throwaway PostgreSQL, run the whole suite on SQLite and Postgres).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: setup demo test bench-ingest clean

setup: $(VENV)/.installed

# CPU torch first: otherwise pip resolves `torch>=2.4` to a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==$(TORCH_VERSION) || $(BIN)/pip install -q torch --index-url $(TORCH_INDEX)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/prewarm demo

test: setup
	scripts/test.sh

bench-ingest: setup
	$(BIN)/python benchmarks/ingest/run.py

clean:
	rm -rf $(VENV) .pytest_cache
