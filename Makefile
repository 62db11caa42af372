# Two entry points: `make demo` (set up, then run the end-to-end demo on embedded defaults) and
# `make test` (set up, start a throwaway PostgreSQL, run the whole suite on SQLite and Postgres).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# TORCH=cpu (default): the CPU-only build; TORCH=cuda: the CUDA build (see scripts/install_torch.sh).
TORCH ?= cpu
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo replay test bench-ingest bench-ingest-memory clean

setup: $(VENV)/.installed

# Torch first, CPU-only unless TORCH=cuda: otherwise pip resolves `torch>=2.4` to a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	TORCH=$(TORCH) TORCH_VERSION=$(TORCH_VERSION) scripts/install_torch.sh $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/prewarm demo

# The example fleet's last 2 days replayed through two hosts on loopback, per policy (about 8 minutes).
replay: setup
	$(BIN)/prewarm models import examples/fleet.yaml
	$(BIN)/prewarm replay --trace examples/telemetry.csv --speedup 1440 --policy always,reactive,forecast -o replay-results

test: setup
	scripts/test.sh

bench-ingest: setup
	$(BIN)/python benchmarks/ingest/run.py

bench-ingest-memory: setup
	$(BIN)/python benchmarks/ingest/memory.py

clean:
	rm -rf $(VENV) .venv-interop .pytest_cache
