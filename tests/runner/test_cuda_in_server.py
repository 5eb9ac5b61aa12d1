"""A warm server that initialised CUDA while importing cannot fork cells that use the GPU: it
says so, and cells start spawned instead (the check forced through torch's own flag)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from bench.results import cell_records, image_records, read_records
from bench.runner import processes
from bench.runner.executor import run_config
from bench.runner.processes import cell_context, stop_cell_server, usable_context
from tests.runner.test_processes import _probe

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the forkserver is Linux's here")
FORCE = "tests.runner.cuda_initialised_preload"


@pytest.fixture(scope="module")
def server_holding_cuda() -> Iterator[None]:
    """One such server for the tests that ask for it (starting one costs seconds of imports);
    the plain one is back for whatever runs next."""
    stop_cell_server()  # a server started by an earlier test has the plain preload
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(processes, "PRELOAD", [FORCE, *processes.PRELOAD])
        yield
    stop_cell_server()


def test_a_plain_server_serves_forked_cells() -> None:
    context = cell_context()  # the plain server: this process's own, or a new one
    assert usable_context(context) == (context, None)
    assert context.get_start_method() == "forkserver"


def test_a_server_holding_cuda_is_left_for_spawned_cells(server_holding_cuda: None) -> None:
    forked = cell_context()
    context, note = usable_context(forked)
    assert context.get_start_method() == "spawn"
    assert note is not None and "\n" not in note
    assert "before the warm-up: torch.cuda.is_initialized() is True" in note
    assert "cells start spawned" in note
    # What a forked cell would have started with, and what a spawned one starts with.
    assert _probe(forked)["cuda_initialized"] is True
    assert _probe(context)["cuda_initialized"] is False


@pytest.mark.slow
def test_a_sweep_runs_its_cells_spawned_and_says_why(
    server_holding_cuda: None, write_config, tmp_path: Path, tiny_pipeline: Path
) -> None:
    config = write_config(
        variants=[{"name": "full", "kind": "full", "dtype": "float32"}],
        prompts=[{"id": "city", "text": "a city"}],
        steps=1,
        max_sequence_length=16,
        warmup=0,
    )
    out = io.StringIO()
    run_dir = run_config(config, tmp_path / "results", console=Console(file=out, width=400))
    said = [line for line in out.getvalue().splitlines() if "note:" in line]
    assert len(said) == 1 and "cells start spawned" in said[0]
    records = read_records(run_dir)
    assert [r["status"] for r in cell_records(records).values()] == ["ok"]
    assert [r["status"] for r in image_records(records).values()] == ["ok"]
