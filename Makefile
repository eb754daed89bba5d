# The two commands a user types: `make run` and `make test`.  Each creates .venv on
# first use and reinstalls the project into it when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench container-test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/bpserve

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Build the image with podman and run it for real (needs root; see tests/container/run.sh).
container-test:
	bash tests/container/run.sh

# Training speed against PyTorch on the CPU (installs the pinned CPU wheel).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/train_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
