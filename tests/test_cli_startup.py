"""A command line that answers at once and says only its answer: `bench --help` and every
command's own help import no torch, the group's help lists the lazy commands from their own
words, and a good command prints nothing on stderr. Speed goals are benchmarks/cli_startup.py's.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import LAZY_COMMANDS

BENCH = str(Path(sys.executable).parent / "bench")
HEAVY = ("torch", "diffusers", "transformers", "torchao", "bitsandbytes", "pandas")

PROBE = """
import json, sys
sys.argv = ["bench", *json.loads(sys.argv[1])]
from bench.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print(json.dumps([code, heavy]), file=sys.stderr)
"""


def heavy_imports(*args: str) -> list[str]:
    """Heavy libraries in sys.modules after `bench ARGS` ran in a fresh interpreter, which
    must succeed (a command that stops at an error would import nothing and prove nothing)."""
    probe = PROBE % (HEAVY,)
    result = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(list(args))],
        capture_output=True,
        text=True,
        check=True,
    )
    code, heavy = json.loads(result.stderr.strip().splitlines()[-1])
    assert code == 0, result.stderr
    return heavy


@pytest.mark.parametrize("args", [["--help"], ["size", "--help"], ["run", "--help"]])
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    assert heavy_imports(*args) == []


@pytest.mark.parametrize(
    "args",
    [
        ["size", "--model", "flux-dev", "--vram", "16GiB"],
        ["size", "--model", "wan2.1-t2v-14b", "--quant", "Q4_K_S", "--speedup", "first_block"],
        ["size", "--model", "flux-dev", "--quant", "torchao:int8wo", "--speedup", "lora"],
    ],
)
def test_sizing_a_builtin_model_imports_no_heavy_library(args: list[str]) -> None:
    """Its variants come from the stored table (bench/data/component_sizes.json)."""
    assert heavy_imports(*args) == []


def test_every_command_help_imports_no_torch() -> None:
    for name in ["run", "env", *LAZY_COMMANDS]:
        assert "torch" not in heavy_imports(name, "--help"), name


def test_the_group_help_lists_each_lazy_command_in_its_own_words() -> None:
    for name, (module, attribute, help_line) in LAZY_COMMANDS.items():
        function = getattr(importlib.import_module(module), attribute)
        docstring = " ".join((inspect.getdoc(function) or "").split())
        assert docstring.startswith(help_line.removesuffix(".")), name
    listed = subprocess.run([BENCH, "--help"], capture_output=True, text=True, check=True)
    for name in LAZY_COMMANDS:
        assert f" {name} " in listed.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        *[[name, "--help"] for name in ["run", "env", *LAZY_COMMANDS]],
        ["size", "--model", "flux-dev", "--vram", "16GiB"],
        ["env"],
    ],
)
def test_a_good_command_prints_nothing_on_stderr(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [BENCH, *args], capture_output=True, text=True, cwd=tmp_path, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and result.stderr == ""
