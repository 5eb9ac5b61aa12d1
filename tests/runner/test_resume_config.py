"""`bench run CONFIG --resume RUN_DIR`, what people type after a kill: accepted when CONFIG is the
run's config, refused with one line naming the first difference otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.results import MANIFEST, RECORDS
from bench.runner.executor import first_difference
from tests.fixtures.make_runs import CONFIGS
from tests.fixtures.recorded import copy_recorded_run
from tests.runner.sample_config import BASE_CONFIG

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished one-variant run, recorded (tests/fixtures/runs/finished/), and the config file
    it was started from."""
    folder = tmp_path_factory.mktemp("resume-config")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIGS["finished"][0]))
    return copy_recorded_run("finished", folder), config


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "run", *args, "--no-score"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _edited(config: Path, tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(config.read_text())
    data.update(changes)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_runs_own_config_is_accepted(finished: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, config = finished
    before = (run_dir / RECORDS).read_bytes()
    # Renamed, re-described and in another folder: still the same settings, the same hash.
    same = _edited(config, tmp_path, name="renamed", description="a copy")
    done = bench(str(same), "--resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert (run_dir / RECORDS).read_bytes() == before


@pytest.mark.parametrize(
    ("changes", "difference"),
    [
        ({"steps": 4}, "steps: 3 in the run, 4 in the config"),
        (
            {"variants": [{**BASE_CONFIG["variants"][0], "dtype": "bfloat16"}]},
            "variants[0].dtype: 'float32' in the run, 'bfloat16' in the config",
        ),
    ],
    ids=["steps", "variant-dtype"],
)
def test_another_config_is_refused_naming_the_difference(
    finished: tuple[Path, Path], tmp_path: Path, changes: dict, difference: str
) -> None:
    run_dir, config = finished
    manifest = (run_dir / MANIFEST).read_bytes()
    other = _edited(config, tmp_path, **changes)
    done = bench(str(other), "--resume", str(run_dir))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {other} is not the config of {run_dir}: {difference}"]
    assert (run_dir / MANIFEST).read_bytes() == manifest


def test_changed_prompts_are_refused(finished: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, config = finished
    prompts = [{**BASE_CONFIG["prompts"][0], "text": "another text"}, BASE_CONFIG["prompts"][1]]
    done = bench(str(_edited(config, tmp_path, prompts=prompts)), "--resume", str(run_dir))
    assert done.returncode == 2
    assert "prompts[0].text" in done.stderr.strip().splitlines()[-1]


def test_resume_without_config_still_works(finished: tuple[Path, Path]) -> None:
    run_dir, _ = finished
    manifest = json.loads((run_dir / MANIFEST).read_text())
    done = bench("--resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / MANIFEST).read_text())["finished_at"] == manifest["finished_at"]


def test_first_difference_walks_nested_keys_and_lists() -> None:
    assert first_difference({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2]}}) is None
    assert first_difference({"a": {"b": [1, 2]}}, {"a": {"b": [1, 3]}}) == (
        "a.b[1]: 2 in the run, 3 in the config"
    )
    assert first_difference({"a": [1]}, {"a": [1, 2]}) == "a: 1 entries in the run, 2 in the config"
    assert first_difference({"a": 1}, {"a": 1, "c": 0}) == "c: absent in the run, 0 in the config"
