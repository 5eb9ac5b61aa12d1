"""`bench.size(speedups=...)`: the public API sizes speed-ups as `bench size --speedup` does, term
for term, and names its own parameter when a value is bad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import bench
from bench.cli.size import size_command
from bench.errors import UserInputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("size")(size_command)
app.command("noop")(lambda: None)  # two commands: typer keeps `size` as a subcommand
runner = CliRunner()

QUERIES = [
    ("flux-dev", ["Q8_0"], ["first_block", "{kind: lora, rank: 32, fused: true}"]),
    ("wan2.1-t2v-14b", ["Q4_K_S"], ["taylorseer", "lora"]),
]


@pytest.mark.parametrize(("model", "quant", "speedups"), QUERIES)
def test_the_api_gives_the_commands_terms(
    model: str, quant: list[str], speedups: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "size.json"
    args = ["size", "--model", model, "--offload", "none", "--offload", "model"]
    args += [arg for q in quant for arg in ("--quant", q)]
    args += [arg for s in speedups for arg in ("--speedup", s)]
    result = runner.invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    command = {
        (p["variant"], p["offload"]): p["prediction"]
        for p in json.loads(out.read_text())["predictions"]
    }
    options = bench.size(model=model, quant=quant, offload=["none", "model"], speedups=speedups)
    api = {(o.variant, o.offload): o.prediction.to_json() for o in options}
    assert api == command
    names = {t["name"] for p in api.values() for t in p["terms"]}
    cache = "First Block Cache state" if "first_block" in speedups else "TaylorSeer factors"
    assert {"LoRA adapters", cache} <= names


@pytest.mark.parametrize("value", [["warp"], ["{kind: lora, rank: 0}"], 3])
def test_a_bad_speedup_names_the_parameter(value: object) -> None:
    with pytest.raises(UserInputError, match=r"^size\(speedups=\.\.\.\): "):
        bench.size(speedups=value)  # type: ignore[arg-type]
