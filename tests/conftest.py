"""Shared fixtures: one cache of synthetic pipelines and GGUF files per test session."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Under pytest-xdist each worker gets its share of the cores for torch's threads (set before
# torch is imported, inherited by every process a test starts): two workers of two threads
# each on two cores spin against each other (docs/measurements.md, the test suite).
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session", autouse=True)
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic pipelines are built once per session, never into the user's own cache.

    Under pytest-xdist the workers share one cache (in the session's folder, above each
    worker's own): a pipeline or GGUF file is written under a temporary name and renamed, so
    two workers building the same one at once leave one complete copy."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        cache = tmp_path_factory.getbasetemp().parent / "bench-cache"
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("bench-cache")
    previous = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("BENCH_CACHE_DIR", None)
    else:
        os.environ["BENCH_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_pipeline(bench_cache: Path) -> Path:
    from bench.families.synthetic import ensure_synthetic_pipeline

    return ensure_synthetic_pipeline("tiny", 0)


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_as_a_terminal_gives_it() -> Iterator[None]:
    """The session has Ctrl-C as a terminal delivers it, however the suite was started.

    A script that starts the suite in the background (`make test &` without job control) starts
    it with SIGINT ignored, and every run a test starts would inherit that and, as bench does
    for nohup, keep ignoring it: the Ctrl-C tests would fail for a reason outside the code.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files that hold `slow` tests (real pipelines, subprocesses) run first, each file's
    tests in their own order: two xdist workers (`--dist loadfile`) then share the long files
    out early and end on short ones, instead of one worker running the last long file alone."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within a group
