"""Shared fixtures: one cache of synthetic pipelines and GGUF files per test session (per
pytest-xdist worker: each worker is a session of its own), and the grouping of tests on workers."""

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


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` (``make test``), the tests that share a module-scoped fixture
    (most often a whole run, in seconds) go to one worker, so it is made once, not once per
    worker; one group per parameter of a parametrized one (one family each), so the groups
    still spread. A test that names its own group (``xdist_group``) keeps it."""
    for item in items:
        if not isinstance(item, pytest.Function) or item.get_closest_marker("xdist_group"):
            continue
        scopes = {name: defs[-1].scope for name, defs in item._fixtureinfo.name2fixturedefs.items()}
        shared = [name for name, scope in scopes.items() if scope == "module"]
        if shared:
            params = getattr(getattr(item, "callspec", None), "params", {})
            split = "".join(f"[{name}={params[name]}]" for name in sorted(shared) if name in params)
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}{split}"))
