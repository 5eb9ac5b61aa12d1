"""Shared fixtures: one cache of synthetic pipelines and GGUF files per test session."""

from __future__ import annotations

import os
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
