"""`bench matrix`: version sets, layered environments, and one real two-release run (slow)."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import typer
import yaml
from packaging.specifiers import SpecifierSet
from typer.testing import CliRunner

from bench.cli.compare import matrix_command
from bench.comparison.envs import (
    MARKER,
    EnvironmentBuildError,
    ensure_env,
    env_key,
    find_uv,
    pins_label,
)
from bench.comparison.releases import version_sets
from bench.environment import PACKAGES
from bench.errors import UserInputError
from tests.cli_probe import run_commands


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
        ({"diffusers": ["latest,0.42.1"]}, "--diffusers: 'latest' is not a release version"),
        ({"diffusers": [">=1,0.42.1"]}, "--diffusers: '>=1' is not a release version"),
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


def test_matrix_refuses_a_version_word_before_building_anything(refusals: Refusals) -> None:
    """A real process: one error line, exit 2, and neither an environment nor a run folder."""
    (result, folder), cache, stray = refusals["version-word"]
    assert result["code"] == 2
    assert result["stderr"].strip().splitlines() == [
        "error: --diffusers: 'latest' is not a release version (expected an exact version such "
        "as 0.42.1, no ranges or names)"
    ]
    assert result["stdout"] == "" and stray == ""
    assert not cache.exists() and not (folder / "m").exists()


@pytest.mark.slow
def test_no_resolution_is_one_line_naming_the_conflict(tmp_path: Path) -> None:
    hub = metadata.version("huggingface-hub")
    with pytest.raises(EnvironmentBuildError) as caught:
        ensure_env({"diffusers": "0.41.0", "huggingface-hub": hub}, root=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "diffusers==0.41.0 depends on huggingface-hub" in message
    assert list(tmp_path.iterdir()) == []  # nothing built, nothing to reuse


def test_an_incomplete_environment_is_never_reused(tmp_path: Path) -> None:
    """A folder without the completion marker, and a leftover build, are both replaced by a
    verified environment with its marker (the base's own diffusers: the resolution, which asks
    the registry, moves nothing, so nothing is downloaded)."""
    pins = {"diffusers": metadata.version("diffusers")}
    key = env_key(pins)
    (tmp_path / key).mkdir()
    (tmp_path / key / "junk").write_text("half-built")
    (tmp_path / f"{key}.building").mkdir()
    env = ensure_env(pins, root=tmp_path)
    assert env.resolved == {} and env.path == tmp_path / key
    assert sorted(p.name for p in tmp_path.iterdir()) == [key]
    assert (env.path / MARKER).is_file() and not (env.path / "junk").exists()


def test_layered_env_sees_the_current_packages_without_copying_them(tmp_path: Path) -> None:
    """Offline: the `.pth` layer alone makes torch and the editable bench importable."""
    from bench.comparison.envs import _check, _create_venv

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
    from bench.comparison.envs import _plain

    assert _plain('huggingface-hub<2.0,>=1.32.0; python_version >= "3.9"') in {
        "huggingface-hub<2.0,>=1.32.0",
        "huggingface-hub>=1.32.0,<2.0",
    }
    assert _plain("requests[socks]>=2") == "requests[socks]>=2"


TINY_MATRIX_CONFIG = {
    "name": "matrix",
    "model": {"source": "synthetic", "preset": "tiny", "seed": 0},
    "variants": [{"name": "full", "kind": "full", "dtype": "float32"}],
    "offload": ["none"],
    "prompts": [{"id": "city", "text": "a futuristic city at sunset"}],
    "repeats": 1,
    "seed": 42,
    "height": 64,
    "width": 64,
    "steps": 1,
    "max_sequence_length": 32,
    "warmup": 0,
    "device": "cpu",
}

# name: (config, the options after it): each refused before anything is resolved or built.
REFUSED = {
    "version-word": (TINY_MATRIX_CONFIG, ["--diffusers", "latest,0.42.1"]),
    "steps": ({**TINY_MATRIX_CONFIG, "steps": 0}, ["--diffusers", "0.41.0,0.42.1"]),
    "--json": (TINY_MATRIX_CONFIG, ["--diffusers", "0.41.0,0.42.1", "--json", "."]),
    "--markdown": (
        TINY_MATRIX_CONFIG,
        ["--diffusers", "0.41.0,0.42.1", "--markdown", "nowhere/m.md"],
    ),
}
# name -> ((the command's result, its folder), the cache folder, stray stderr of the process)
Refusals = dict[str, tuple[tuple[dict, Path], Path, str]]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> Refusals:
    """`bench matrix` on each REFUSED case, each in its own folder (`--out m` there), one
    interpreter for all (tests/cli_probe.py), with a cache folder none of them may create."""
    root = tmp_path_factory.mktemp("refusals")
    folders = [root / name for name in REFUSED]
    for folder, (config, _) in zip(folders, REFUSED.values(), strict=True):
        folder.mkdir()
        (folder / "matrix.yaml").write_text(yaml.safe_dump(config))
    commands = [["matrix", "matrix.yaml", *extra, "--out", "m"] for _, extra in REFUSED.values()]
    cache = root / "cache"
    results, stray = run_commands(
        commands, cwds=folders, env={**os.environ, "BENCH_CACHE_DIR": str(cache)}
    )
    return {
        name: ((result, folder), cache, stray)
        for name, result, folder in zip(REFUSED, results, folders, strict=True)
    }


@pytest.mark.slow
def test_matrix_two_real_diffusers_releases(tmp_path: Path) -> None:
    """Installs diffusers 0.41.0 from the package registry (network) with what the resolver
    moves for it (huggingface-hub, transformers: stable, since both releases are old and the
    base is the lock's), uses the locked 0.42.1 as it is, runs a tiny config in each, and
    compares them. torch must stay the base environment's build.

    The resolution (uv's resolver) moves only what a release needs: diffusers 0.41.0 needs
    huggingface-hub below 2 while the locked transformers needs hub 2, so both dependents move,
    and nothing else that fits stays where the base has it. The base's own release moves
    nothing; torch is never part of a resolution it was not named in."""
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
    resolved = {e["label"]: e["resolved"] for e in summary["environments"]}
    base_diffusers = metadata.version("diffusers")
    assert resolved[f"diffusers-{base_diffusers}"] == {}
    moved_here = resolved["diffusers-0.41.0"]
    assert moved_here["diffusers"] == {"base": base_diffusers, "version": "0.41.0"}
    hub = moved_here["huggingface-hub"]
    assert hub["base"] == metadata.version("huggingface-hub")
    # diffusers 0.41.0 requires huggingface-hub>=1.32.0,<2.0 (uv says so in
    # test_no_resolution_is_one_line_naming_the_conflict).
    assert SpecifierSet(">=1.32.0,<2.0").contains(hub["version"])
    assert not SpecifierSet(">=1.32.0,<2.0").contains(hub["base"])
    transformers = moved_here["transformers"]
    assert transformers["base"] == metadata.version("transformers") != transformers["version"]
    for name in ("torch", "numpy", "safetensors", "accelerate"):
        assert name not in moved_here
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
    # Every package a resolution moved is named, diffusers' dependents too, and nothing else.
    moved = {n for e in summary["environments"] for n in e["resolved"]}
    assert {"diffusers", "transformers", "huggingface-hub"} <= moved
    assert {v["field"] for v in comparison["versions"]} == {
        f"packages.{n}" if n in PACKAGES else f"distributions.{n}" for n in moved
    }
    (cell,) = comparison["cells"]
    assert cell["status"]["verdict"] == "no change"
    assert cell["time"]["verdict"] == "insufficient data"  # 1 image per run: honest
    assert "diffusers-0.41.0" in result.output and "diffusers-0.42.1" in result.output


def test_version_changes_name_every_moved_distribution_once() -> None:
    """A package the manifest names under `packages` is diffed there only; every other
    installed distribution that moved is named under `distributions`; manifests from before
    the distribution list (no such key) diff their packages only."""
    from bench.comparison.comparability import version_changes

    def manifest(diffusers: str, hub: str, with_distributions: bool = True) -> dict:
        env: dict = {"packages": {"diffusers": diffusers, "torch": "2.13.0"}}
        if with_distributions:
            env["distributions"] = {"diffusers": diffusers, "huggingface-hub": hub, "numpy": "2"}
        return {"environment": env}

    fields = [d.field for d in version_changes(manifest("0.42.1", "2.4"), manifest("0.41", "1"))]
    assert fields == ["packages.diffusers", "distributions.huggingface-hub"]
    old = manifest("0.42.1", "2.4", with_distributions=False)
    assert [d.field for d in version_changes(old, manifest("0.41", "1"))] == ["packages.diffusers"]


@pytest.mark.parametrize("expected", ["steps", "--json", "--markdown"])
def test_matrix_checks_config_and_outputs_before_building(
    refusals: Refusals, expected: str
) -> None:
    """A real process: a bad config or an unwritable output is one line before any
    environment is resolved or built."""
    (result, folder), cache, _ = refusals[expected]
    assert result["code"] == 2, result["stderr"]
    (line,) = [x for x in result["stderr"].splitlines() if x.startswith("error:")]
    assert expected in line and result["stderr"].strip().endswith(line)
    assert not cache.exists() and not (folder / "m").exists()
