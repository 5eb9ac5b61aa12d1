"""inspect_gguf and the typer commands (quantize, inspect) through CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bench.cli.gguf import inspect_command, quantize_command, split_types
from bench.families.gguf import inspect_gguf, quantize_checkpoint
from bench.gguf.errors import GGUFFileError


@pytest.fixture(scope="module")
def q8_file(tiny_flux_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inspect") / "tiny-Q8_0.gguf"
    quantize_checkpoint(tiny_flux_pipeline / "transformer", out, "Q8_0")
    return out


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("quantize")(quantize_command)
    app.command("inspect")(inspect_command)
    return app


def test_inspect_reports_types_and_sizes(q8_file: Path) -> None:
    r = inspect_gguf(q8_file)
    assert r.metadata["general.architecture"] == "flux"
    assert r.metadata["general.file_type"] == 7
    assert r.tensors_per_type == {"F32": 36, "F16": 10, "Q8_0": 20}
    assert r.tensor_count == 66
    assert r.key_names == "diffusers"
    assert r.file_bytes == q8_file.stat().st_size
    assert sum(r.bytes_per_type.values()) < r.file_bytes
    assert 8.5 < r.bits_per_weight < 16


def test_inspect_errors_name_the_file(q8_file: Path, tmp_path: Path) -> None:
    data = q8_file.read_bytes()
    cases = {
        "missing.gguf": None,
        "empty.gguf": b"",
        "text.gguf": b"hello, this is not a gguf file at all",
        "header-cut.gguf": data[:40],
        "data-cut.gguf": data[: len(data) - 1000],
    }
    for name, content in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(GGUFFileError) as exc:
            inspect_gguf(p)
        msg = str(exc.value)
        assert str(p) in msg and "\n" not in msg, msg


def test_cli_quantize_several_types(tiny_flux_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(
        _app(),
        [
            "quantize",
            str(tiny_flux_pipeline / "transformer"),
            "--type",
            "Q8_0,q4_k",
            "--type",
            "F16",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    stem = tiny_flux_pipeline.name
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}-{t}.gguf" for t in ("Q8_0", "Q4_K", "F16")
    )
    assert inspect_gguf(out / f"{stem}-Q4_K.gguf").tensors_per_type["Q4_K"] == 20


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--type", "Q3_K"], "Q3_K"),
        (["--type", "Q8_0", "--key-names", "bfl2"], "--key-names"),
        (["--type", "Q8_0", "--family", "sdxl"], "--family"),
    ],
)
def test_cli_quantize_bad_input_exit_2(
    tiny_flux_pipeline: Path, tmp_path: Path, args: list[str], expect: str
) -> None:
    out = tmp_path / "o"
    res = CliRunner().invoke(
        _app(), ["quantize", str(tiny_flux_pipeline / "transformer"), *args, "--out", str(out)]
    )
    assert res.exit_code == 2
    assert expect in res.output
    assert not out.exists() or not any(out.iterdir())


def test_cli_quantize_missing_src(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        _app(), ["quantize", str(tmp_path / "nope"), "--type", "Q8_0", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2
    assert "nope" in res.output and "no such file" in res.output


def test_cli_inspect(q8_file: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(_app(), ["inspect", str(q8_file), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["tensors_per_type"]["Q8_0"] == 20
    res = CliRunner().invoke(_app(), ["inspect", str(q8_file)])
    assert res.exit_code == 0 and "general.architecture = flux" in res.output
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    res = CliRunner().invoke(_app(), ["inspect", str(bad)])
    assert res.exit_code == 2
    assert "bad.gguf" in res.output


def test_split_types() -> None:
    assert split_types(["Q8_0,q6_k", "Q4_K Q4_K_M", "Q8_0"]) == ["Q8_0", "Q6_K", "Q4_K", "Q4_K_M"]


@pytest.mark.parametrize("family", ["sd3", "qwen_image", "wan"])
def test_cli_quantize_writes_the_family_it_reads_from_the_tensor_names(
    family: str, tmp_path: Path
) -> None:
    """A bare .safetensors file (no config.json) of another family's transformer: the family
    comes from its tensor names, and the file is in that family's community layout."""
    from bench.families import get_family
    from bench.families.synthetic import ensure_synthetic_pipeline

    folder = ensure_synthetic_pipeline("tiny", 0, family) / "transformer"
    (source,) = sorted(folder.glob("*.safetensors"))
    res = CliRunner().invoke(
        _app(), ["quantize", str(source), "--type", "Q8_0", "--out", str(tmp_path), "-j", "1"]
    )
    assert res.exit_code == 0, res.output
    (made,) = tmp_path.glob("*.gguf")
    assert (
        inspect_gguf(made).metadata["general.architecture"] == get_family(family).gguf.architecture
    )
