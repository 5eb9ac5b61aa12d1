"""The library never imports the CLI: `bench.cli` (and typer) load only for the `bench` command.

Checked in a fresh interpreter, since this test session has long imported both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [
    "bench",
    "bench.comparison",
    "bench.reporting",
    "bench.sizing",
    "bench.scoring",
    "bench.gguf",
]


def imported_after(code: str) -> list[str]:
    probe = code + (
        "\nimport json, sys\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('bench', 'typer', 'torch', 'pandas'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_library_modules_do_not_import_typer_or_the_cli() -> None:
    modules = imported_after("\n".join(f"import {name}" for name in LIBRARY))
    assert set(LIBRARY) <= set(modules)  # the probe did import them
    assert [m for m in modules if m == "typer" or m.startswith("typer.")] == []
    assert [m for m in modules if m == "bench.cli" or m.startswith("bench.cli.")] == []


def test_import_bench_is_cheap() -> None:
    modules = imported_after("import bench")
    assert "bench.api" in modules
    assert not [m for m in modules if m.split(".")[0] in ("torch", "pandas", "typer")]
