"""bench/cli/errors.py: typed errors become one `error: ...` line on stderr and exit status 2
in the CLI, and only there; anything else still surfaces as the bug it is."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from bench.cli.errors import reports_user_errors
from bench.errors import ConfigError
from bench.gguf.errors import GGUFFileError

ROOT = Path(__file__).resolve().parents[1]


def _invoke(command: Callable[..., None], *args: str) -> Result:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(command)
    return CliRunner().invoke(app, list(args))


def test_a_user_error_is_one_line_on_stderr_and_exit_2() -> None:
    @reports_user_errors()
    def command(name: str) -> None:
        print("started")
        raise ConfigError(f"{name}: expected a mapping")

    result = _invoke(command, "cfg.yaml")
    assert result.exit_code == 2
    assert result.stderr == "error: cfg.yaml: expected a mapping\n"
    assert result.stdout == "started\n"


def test_domain_errors_only_where_the_command_declares_them() -> None:
    @reports_user_errors(GGUFFileError)
    def inspects(path: str) -> None:
        raise GGUFFileError(f"{path}: not a GGUF file")

    @reports_user_errors()
    def does_not(path: str) -> None:
        raise GGUFFileError(f"{path}: not a GGUF file")

    declared = _invoke(inspects, "x.gguf")
    assert declared.exit_code == 2 and declared.stderr == "error: x.gguf: not a GGUF file\n"
    undeclared = _invoke(does_not, "x.gguf")
    assert isinstance(undeclared.exception, GGUFFileError) and undeclared.exit_code == 1


def test_the_decorated_command_keeps_its_options() -> None:
    @reports_user_errors()
    def command(count: int = typer.Option(1, min=1)) -> None:
        print(count * "x")

    assert _invoke(command, "--count", "3").stdout == "xxx\n"
    assert _invoke(command, "--count", "0").exit_code == 2  # click's own usage error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "no-such-run"], "error: no-such-run: run folder not found"),
        (["run", "no-such.yaml"], "error: no-such.yaml: config file not found"),
    ],
)
def test_python_m_bench_reports_through_the_package(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and lines == [message], result.stderr
