"""A command line that answers at once and says only its answer: `bench --help` and every
command's own help import no heavy library (issue 23), nor does sizing a built-in model, the
group's help lists the lazy commands from their own words, and a good command prints nothing on
stderr. Speed goals are benchmarks/cli_startup.py's.

The commands run one after another in one fresh interpreter (tests/cli_probe.py; a process
each cost ~0.5 s and showed nothing more), and the interpreter itself must write nothing on
stderr; the group's help also runs as the real `bench` script.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import LAZY_COMMANDS
from tests.cli_probe import run_commands

BENCH = str(Path(sys.executable).parent / "bench")
HEAVY = (
    "torch",
    "diffusers",
    "transformers",
    "torchao",
    "bitsandbytes",
    "pandas",
    "scipy",
    "torchmetrics",
)

HELPS = [["--help"], *[[name, "--help"] for name in ["run", "env", *LAZY_COMMANDS]]]
SIZING = [
    ["size", "--model", "flux-dev", "--vram", "16GiB"],
    ["size", "--model", "wan2.1-t2v-14b", "--quant", "Q4_K_S", "--speedup", "first_block"],
    ["size", "--model", "flux-dev", "--quant", "torchao:int8wo", "--speedup", "lora"],
]
# Helps and sizing first, `bench env` (which may import anything) last.
COMMANDS = [*HELPS, *SIZING, ["env"]]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], dict]:
    """Each command of COMMANDS as run in one fresh interpreter (tests/cli_probe.py): exit
    code, the heavy libraries in sys.modules after it, its stdout and stderr."""
    results, stderr = run_commands(COMMANDS, heavy=HEAVY, cwd=tmp_path_factory.mktemp("cli"))
    assert stderr == ""  # nothing written past sys.stderr either
    return {tuple(args): r for args, r in zip(COMMANDS, results, strict=True)}


def heavy_imports(ran: dict[tuple[str, ...], dict], *args: str) -> list[str]:
    """Heavy libraries in sys.modules after `bench ARGS`, which must succeed (a command that
    stops at an error would import nothing and prove nothing)."""
    probe = ran[args]
    assert probe["code"] == 0, probe["stderr"]
    return probe["heavy"]


@pytest.mark.parametrize("args", HELPS, ids=" ".join)
def test_help_imports_no_heavy_library(ran: dict, args: list[str]) -> None:
    assert heavy_imports(ran, *args) == []
    assert "Usage:" in ran[tuple(args)]["stdout"]


@pytest.mark.parametrize("args", SIZING, ids=" ".join)
def test_sizing_a_builtin_model_imports_no_heavy_library(ran: dict, args: list[str]) -> None:
    """Its variants come from the stored table (bench/data/component_sizes.json)."""
    assert heavy_imports(ran, *args) == []


def test_the_group_help_lists_each_lazy_command_in_its_own_words() -> None:
    for name, (module, attribute, help_line) in LAZY_COMMANDS.items():
        function = getattr(importlib.import_module(module), attribute)
        docstring = " ".join((inspect.getdoc(function) or "").split())
        assert docstring.startswith(help_line.removesuffix(".")), name
    listed = subprocess.run([BENCH, "--help"], capture_output=True, text=True, check=True)
    for name in LAZY_COMMANDS:
        assert f" {name} " in listed.stdout
    assert listed.stderr == ""


@pytest.mark.parametrize("args", [*HELPS, SIZING[0], ["env"]], ids=" ".join)
def test_a_good_command_prints_nothing_on_stderr(ran: dict, args: list[str]) -> None:
    result = ran[tuple(args)]
    assert result["code"] == 0, result["stderr"]
    assert result["stdout"].strip() and result["stderr"] == ""
