# Two entry points for a fresh clone: `make demo` (set up, then run the embedded default) and
# `make test` (set up with dev extras, then lint and test). Torch is installed first from a
# pinned spec so that no later requirement can pull an unpinned build with CUDA packages.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONFIG ?= configs/tiny.yaml

.PHONY: demo test lint format install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet $(TORCH_SPEC)
	$(PIP) install --quiet -e ".[backends]"
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -e ".[backends,ray,dev]"
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/bench run $(CONFIG)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The GPU check (docs/gpu-check.md): on a CUDA machine under its own python3 with the wheels of
# .whl/ (benchmarks/gpu_wheels.sh); the smoke twin on the tiny pipeline with this .venv.
.PHONY: gpu-check gpu-check-smoke
gpu-check:
	benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

gpu-check-smoke: $(VENV)/.installed
	benchmarks/gpu_check.sh --smoke $(GPU_CHECK_ARGS)
