"""`bench matrix`: version sets, layered environments, and one real two-release run (slow)."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from bench.cli.compare import matrix_command
from bench.compare.envs import env_key, pins_label
from bench.compare.releases import version_sets
from bench.errors import UserInputError


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(matrix_command)
    return app


def test_version_sets_zip_and_broadcast() -> None:
    sets = version_sets({"diffusers": ["0.41.0,0.42.1"], "transformers": ["5.24.0"], "torch": None})
    assert sets == [
        {"diffusers": "0.41.0", "transformers": "5.24.0"},
        {"diffusers": "0.42.1", "transformers": "5.24.0"},
    ]
    assert version_sets({"diffusers": ["0.40.0", "0.41.0", "0.42.1"]})[2] == {"diffusers": "0.42.1"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"diffusers": None}, "at least one version list"),
        ({"diffusers": ["0.42.1"]}, "at least two version sets"),
        ({"diffusers": ["0.40.0,0.41.0,0.42.1"], "transformers": ["5.23.0,5.24.0"]}, "lengths"),
    ],
)
def test_version_sets_reject_ambiguous_input(options: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        version_sets(options)


def test_env_key_depends_on_pins_only_not_their_order() -> None:
    a = env_key({"diffusers": "0.41.0", "transformers": "5.24.0"})
    b = env_key({"transformers": "5.24.0", "diffusers": "0.41.0"})
    assert a == b and a != env_key({"diffusers": "0.42.1", "transformers": "5.24.0"})
    assert pins_label({"transformers": "5.24.0", "diffusers": "0.41.0"}) == (
        "diffusers-0.41.0_transformers-5.24.0"
    )


def test_matrix_bad_input_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(_app(), [str(tmp_path / "none.yaml"), "--diffusers", "0.41.0,0.42.1"])
    assert missing.exit_code == 2 and "config file not found" in missing.stderr
    one = runner.invoke(_app(), [str(tmp_path / "none.yaml"), "--diffusers", "0.42.1"])
    assert one.exit_code == 2 and "two version sets" in one.stderr


def test_layered_env_sees_the_current_packages_without_copying_them(tmp_path: Path) -> None:
    """Offline: the `.pth` layer alone makes torch and the editable bench importable."""
    from bench.compare.envs import _check, _create_venv, find_uv

    python = _create_venv(tmp_path / "env", find_uv())
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, torch, bench; from importlib import metadata; "
            "print(sys.prefix); print(metadata.version('torch')); print(bench.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    prefix, torch_version, bench_file = probe.stdout.split()
    assert Path(prefix) == tmp_path / "env"
    assert torch_version == metadata.version("torch")
    import bench

    assert Path(bench_file) == Path(bench.__file__)  # the same (editable) install, not a copy
    site = next((tmp_path / "env" / "lib").glob("python*/site-packages"))
    assert sorted(p.name for p in site.iterdir()) == ["_bench_layer.pth"]
    assert _check(python) == {"own": [], "harness": []}


def test_requirement_helpers() -> None:
    from bench.compare.envs import _name, _plain

    assert _plain('huggingface-hub<2.0,>=1.32.0; python_version >= "3.9"') in {
        "huggingface-hub<2.0,>=1.32.0",
        "huggingface-hub>=1.32.0,<2.0",
    }
    assert _plain("requests[socks]>=2") == "requests[socks]>=2"
    assert _name("Torch_Thing>=2") == "torch-thing"


TINY_MATRIX_CONFIG = {
    "name": "matrix",
    "model": {"source": "synthetic", "preset": "tiny", "seed": 0},
    "variants": [{"name": "full", "kind": "full", "dtype": "float32"}],
    "offload": ["none"],
    "prompts": [{"id": "city", "text": "a futuristic city at sunset"}],
    "repeats": 2,
    "seed": 42,
    "height": 64,
    "width": 64,
    "steps": 2,
    "max_sequence_length": 32,
    "warmup": 0,
    "device": "cpu",
}


@pytest.mark.slow
def test_matrix_two_real_diffusers_releases(tmp_path: Path) -> None:
    """Installs diffusers 0.41.0 and 0.42.1 from the package registry (network), runs a tiny
    config in each, and compares them. torch must stay the base environment's build."""
    config = tmp_path / "matrix.yaml"
    config.write_text(yaml.safe_dump(TINY_MATRIX_CONFIG))
    out = tmp_path / "matrix"
    result = CliRunner().invoke(
        _app(), [str(config), "--diffusers", "0.41.0,0.42.1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output + result.stderr
    summary = json.loads((out / "matrix.json").read_text())
    base_torch = metadata.version("torch")
    labels = [e["label"] for e in summary["environments"]]
    assert labels == ["diffusers-0.41.0", "diffusers-0.42.1"]
    for env, version in zip(summary["environments"], ("0.41.0", "0.42.1"), strict=True):
        manifest = json.loads((Path(env["run_dir"]) / "manifest.json").read_text())
        assert manifest["environment"]["packages"]["diffusers"] == version
        assert manifest["environment"]["packages"]["torch"] == base_torch
        python = Path(env["path"]) / "bin" / "python"
        listed = subprocess.run(
            [str(python), "-m", "pip", "list", "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        installed = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
        assert installed["torch"] == base_torch and installed["diffusers"] == version
        site = next((Path(env["path"]) / "lib").glob("python*/site-packages"))
        assert not (site / "torch").exists()  # torch comes from the layer, never reinstalled
    (comparison,) = summary["comparisons"]
    assert comparison["comparable"] is True
    assert [v["field"] for v in comparison["versions"]] == ["packages.diffusers"]
    (cell,) = comparison["cells"]
    assert cell["status"]["verdict"] == "no change"
    assert cell["time"]["verdict"] == "insufficient data"  # 2 images per run: honest
    assert "diffusers-0.41.0" in result.output and "diffusers-0.42.1" in result.output
