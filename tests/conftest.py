"""Shared fixtures: one cache of synthetic pipelines and GGUF files per test session."""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic pipelines are built once per session, never into the user's own cache."""
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


@pytest.fixture(autouse=True)
def _ctrl_c_as_a_terminal_gives_it(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts with Ctrl-C as a terminal delivers it: the default handler, unblocked.

    A test that leaves this process ignoring or blocking SIGINT would pass that on to every run
    a later test starts (a process started with SIGINT ignored keeps ignoring it, as nohup
    wants), and the Ctrl-C tests would fail far from the cause. Such a test gets a warning naming
    it (pytest's warnings summary), and the next test starts clean.
    """
    yield
    handler = signal.getsignal(signal.SIGINT)
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    if handler is not signal.default_int_handler or blocked:
        warnings.warn(
            f"{request.node.nodeid} left SIGINT {'blocked' if blocked else handler!r}; restored",
            stacklevel=1,
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
