"""`bench size` through typer: exit codes and the empty table."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from bench.cli.size import size_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("size")(size_command)
app.command("noop")(lambda: None)  # two commands: typer keeps `size` as a subcommand
runner = CliRunner()


def test_nothing_fits_exits_0_with_an_empty_table(tiny_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    result = runner.invoke(
        app,
        ["size", "--model", str(tiny_pipeline), "--quant", "Q8_0", "--vram", "1MiB",
         "--height", "256", "--width", "256", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "nothing fits" in result.output
    payload = json.loads(out.read_text())
    assert payload["fits"] == []
    assert len(payload["does_not_fit"]) == 2 * 5  # full + Q8_0, five offload modes
    assert all(o["reason"] for o in payload["does_not_fit"])


def test_a_roomy_card_fits_and_shows_where_the_memory_goes(tiny_pipeline: Path) -> None:
    result = runner.invoke(
        app,
        ["size", "--model", str(tiny_pipeline), "--quant", "Q8_0", "--gpu", "RTX 4090",
         "--height", "256", "--width", "256", "--offload", "none"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "where the memory goes" in result.output
    assert "CUDA context" in result.output


def test_malformed_size_exits_2_with_one_line() -> None:
    result = runner.invoke(app, ["size", "--vram", "12 potatoes"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --vram: '12 potatoes'")


def test_unknown_gpu_exits_2_listing_close_matches() -> None:
    result = runner.invoke(app, ["size", "--gpu", "RTX 4070 Super"])
    assert result.exit_code == 2
    assert "RTX 4070" in result.output


def test_unknown_offload_exits_2() -> None:
    result = runner.invoke(app, ["size", "--vram", "8GiB", "--offload", "sometimes"])
    assert result.exit_code == 2
    assert "--offload: 'sometimes'" in result.output
