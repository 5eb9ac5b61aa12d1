"""The library never imports the CLI: `bench.cli` (and typer) load only for the `bench` command.

Checked in one fresh interpreter, since this test session has long imported both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fresh_python import run_python

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [
    "bench",
    "bench.comparison",
    "bench.reporting",
    "bench.sizing",
    "bench.scoring",
    "bench.gguf",
]


# `import bench` alone, then the rest of LIBRARY: the modules loaded after each, one interpreter.
PROBE = """
import json, sys
def loaded():
    roots = ('bench', 'typer', 'torch', 'pandas')
    return sorted(m for m in sys.modules if m.split('.')[0] in roots)
import bench
after_bench = loaded()
%s
print(json.dumps([after_bench, loaded()]))
"""


@pytest.fixture(scope="module")
def imported() -> tuple[list[str], list[str]]:
    """The bench, typer, torch and pandas modules loaded after `import bench` in a fresh
    interpreter, and after importing every module of LIBRARY next."""
    (after_bench, after_all), _ = run_python(
        PROBE % "\n".join(f"import {name}" for name in LIBRARY),
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    return after_bench, after_all


def test_library_modules_do_not_import_typer_or_the_cli(imported: tuple[list, list]) -> None:
    modules = imported[1]
    assert set(LIBRARY) <= set(modules)  # the probe did import them
    assert [m for m in modules if m == "typer" or m.startswith("typer.")] == []
    assert [m for m in modules if m == "bench.cli" or m.startswith("bench.cli.")] == []


def test_import_bench_is_cheap(imported: tuple[list, list]) -> None:
    modules = imported[0]
    assert "bench.api" in modules
    assert not [m for m in modules if m.split(".")[0] in ("torch", "pandas", "typer")]
