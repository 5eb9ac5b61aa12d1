# Two entry points for a fresh clone: `make demo` (set up, then run the embedded default) and
# `make test` (set up with dev extras, then lint and test). Every install is constrained by the
# lock (requirements/lock.txt), so two machines set up a month apart get the same versions.
# Torch is not in the lock: it is installed first from TORCH_SPEC (the CPU build here, your
# CUDA build on a GPU machine), and no later requirement can replace it.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
LOCK := requirements/lock.txt
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONFIG ?= configs/tiny.yaml

.PHONY: demo test lint format install install-dev lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) install --quiet --constraint $(LOCK) $(TORCH_SPEC)
	$(PIP) install --quiet --constraint $(LOCK) -e ".[backends]"
	@rm -f $(VENV)/.installed-dev
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet --constraint $(LOCK) -e ".[backends,ray,dev]"
	@touch $@

# Re-resolve every dependency (all extras) at the registry's newest versions that fit
# pyproject.toml, for Python 3.11 on x86_64 Linux. Torch is resolved as the CPU build of
# LOCK_TORCH (from pip's configured --find-links, where this machine keeps it) and left out of
# the file, so the lock never names a CUDA package. Upgrade on purpose: `make lock`, then
# `bench matrix` old against new (README), then commit the lock.
LOCK_TORCH ?= torch==2.13.0+cpu
FIND_LINKS = $(shell $(PIP) config get global.find-links 2>/dev/null)
lock: | $(BIN)/python
	$(PIP) install --quiet uv
	echo "$(LOCK_TORCH)" > $(VENV)/lock-torch.txt
	$(BIN)/python -m uv pip compile pyproject.toml --all-extras --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --constraint $(VENV)/lock-torch.txt \
		$(if $(FIND_LINKS),--find-links $(FIND_LINKS)) --no-emit-package torch \
		--no-annotate --quiet --output-file $(LOCK)
	@if grep -vE '^nvidia-ml-py==' $(LOCK) | grep -qE '^(nvidia-|triton==)'; then \
		echo "error: $(LOCK) names CUDA packages: point pip's find-links at a CPU torch wheel"; \
		exit 2; fi

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

# The suite runs on two pytest-xdist workers, one per core (`make test TEST_WORKERS=0`: one
# process). --dist loadfile keeps a file's tests on one worker, so a module-scoped fixture (often a
# whole run) is made once. Not loadgroup: xdist 3.8 marks a group by editing a node id that
# pytest 9 no longer reads.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The GPU check (docs/gpu-check.md): on a CUDA machine under its own python3 with the wheels of
# .whl/ (benchmarks/gpu_wheels.sh); the smoke twin on the tiny pipeline with this .venv.
.PHONY: gpu-check gpu-check-smoke
gpu-check:
	benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

gpu-check-smoke: $(VENV)/.installed
	benchmarks/gpu_check.sh --smoke $(GPU_CHECK_ARGS)
