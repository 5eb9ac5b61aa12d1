"""Every registered executor runs one plan into the records the local executor writes.

The test a new executor (an entry of bench.runner.executor_choice.EXECUTORS) must pass: one
small plan on the tiny synthetic pipeline, a cell that runs (2 images, 64 px, 2 steps) and a
cell whose variant cannot be prepared (`unavailable`: no process), run by each executor through
`run_config`, as `bench run --executor NAME` does. Each run folder is compared with a reference
run of the local executor: the records' kinds, statuses, error types, cell ids, image ids and
seeds; their fields (an executor may add its own, never drop one); the pixels of every image.
The local executor is compared with itself too: a second run must give the same pixels.

One torch thread for every run (OMP_NUM_THREADS=1): the Ray executor gives a cell one thread
per CPU slot, and pixels computed on the CPU depend on the thread count. The Ray executor
starts its own Ray instance here, as `bench run --executor ray` does without --ray-address
(RAY_ADDRESS=local: never a cluster that another test process recorded on this machine, which
Ray's `ray.init()` would join).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image
from rich.console import Console

from bench.results import read_manifest, read_records
from bench.runner.executor import run_config
from bench.runner.executor_base import Executor
from bench.runner.executor_choice import EXECUTORS, ExecutorChoice
from tests.runner.sample_config import BASE_CONFIG

pytestmark = pytest.mark.slow

PLAN = {
    **BASE_CONFIG,
    "variants": [
        {"name": "full", "kind": "full", "dtype": "float32"},
        # Loadable by diffusers, not made by the harness: an `unavailable` cell, no process.
        {"name": "Q4_0", "kind": "gguf", "quant": "Q4_0", "compute_dtype": "float32"},
    ],
    "steps": 2,
    "warmup": 0,  # writes no record: every executor would run it alike
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The plan's config, with one torch thread for every run of this module."""
    path = tmp_path_factory.mktemp("conformance") / "config.yaml"
    path.write_text(yaml.safe_dump(PLAN, sort_keys=False))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("RAY_ADDRESS", "local")
        yield path


@pytest.fixture(scope="module")
def reference(config: Path) -> Path:
    """The local executor's run of the plan."""
    return _run(config, "local", config.parent / "reference")


def _run(config: Path, name: str, out: Path) -> Path:
    quiet = Console(file=io.StringIO(), force_terminal=False, width=200)
    return run_config(config, out, console=quiet, executor=ExecutorChoice.parse(name))


def _by_key(run_dir: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    records = read_records(run_dir)
    keyed = {(r["kind"], r["cell_id"], r.get("prompt_id"), r.get("repeat")): r for r in records}
    assert len(keyed) == len(records), "two records for one cell or image"
    return keyed


def _summary(record: dict[str, Any]) -> tuple[Any, ...]:
    """What every executor must agree on in a record."""
    error = record.get("error") or {}
    return (record["status"], error.get("type"), record.get("seed"), record.get("image"))


def _pixels(run_dir: Path) -> dict[str, bytes]:
    out = {}
    for record in read_records(run_dir):
        if record.get("image"):
            with Image.open(run_dir / record["image"]) as picture:
                out[record["image"]] = picture.tobytes()
    return out


def test_the_reference_run_holds_what_the_comparison_needs(reference: Path) -> None:
    records = _by_key(reference)
    statuses = {(kind, cell, record["status"]) for (kind, cell, *_), record in records.items()}
    assert statuses == {
        ("cell", "full__none__64x64", "ok"),
        ("image", "full__none__64x64", "ok"),
        ("cell", "Q4_0__none__64x64", "unavailable"),
    }
    manifest = read_manifest(reference)
    assert len(_pixels(reference)) == len(manifest["images"]) == 2


def test_every_executor_is_registered_under_its_own_name() -> None:
    for name, executor in EXECUTORS.items():
        assert issubclass(executor, Executor) and executor.name == name
        assert isinstance(ExecutorChoice(name).executor(), executor)


@pytest.mark.parametrize("name", list(EXECUTORS))
def test_an_executor_writes_the_records_of_the_local_executor(
    name: str, config: Path, reference: Path
) -> None:
    missing = EXECUTORS[name].unavailable()
    if missing is not None:
        pytest.skip(f"--executor {name}: {missing}")
    run_dir = _run(config, name, config.parent / name)

    expected, got = _by_key(reference), _by_key(run_dir)
    assert sorted(got) == sorted(expected)  # the same cells and images, nothing else
    for key, record in expected.items():
        assert _summary(got[key]) == _summary(record), key
        assert set(record) <= set(got[key]), f"{key}: {set(record) - set(got[key])} missing"
    assert _pixels(run_dir) == _pixels(reference)
    manifest, reference_manifest = read_manifest(run_dir), read_manifest(reference)
    assert manifest["cells"] == reference_manifest["cells"]
    assert manifest["images"] == reference_manifest["images"]
    assert manifest["finished_at"] is not None
