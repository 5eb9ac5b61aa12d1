"""Backend test fixtures: one real run shared by the runner tests of every backend.

test_runner_backends.py (bitsandbytes, layerwise) and test_runner_torchao_quanto.py (torchao,
quanto) read the same kind of run (tests/backends/runner_run.py): each cell is a fresh process
whatever run it is in, so one run with every variant records what two did, without a second
run's set-up (its plan, its warm process server) and a second full-precision cell.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backends.runner_run import run_every_variant


@pytest.fixture(scope="session")
def backends_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run both runner test files read (read only: no test writes into it)."""
    return run_every_variant(tmp_path_factory.mktemp("backends-run"))
