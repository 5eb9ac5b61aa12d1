"""Library releases against each other: one config, one run per version set, and a comparison
of each consecutive pair (`bench matrix CONFIG --diffusers 0.41.0,0.42.1`, bench/cli/compare.py).

This answers "did the new release make anything slower, bigger, worse or broken?" on one
machine in one command: the environments differ only in the pinned packages (bench.comparison.envs),
the runs share config, prompts, seeds and hardware, so every pair is comparable by
construction and its verdicts are the release's doing (plus noise, which the statistics
bound).
"""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.comparison.envs import LayeredEnv, check_version, ensure_env, pins_label, strip_local
from bench.comparison.verdicts import Comparison, Thresholds, compare_runs
from bench.config import load_config
from bench.errors import UserInputError
from bench.results import MANIFEST, read_manifest


def version_sets(options: dict[str, list[str] | None]) -> list[dict[str, str]]:
    """Zip the per-package version lists; a single version is used in every set.

    `--diffusers 0.41.0,0.42.1 --transformers 5.24.0` gives two sets, both with transformers
    5.24.0. Lists of different lengths (both > 1) are ambiguous and rejected.
    """
    lists = {
        name: [
            check_version(f"--{name}", v.strip())
            for item in values or []
            for v in item.split(",")
            if v.strip()
        ]
        for name, values in options.items()
    }
    lists = {name: versions for name, versions in lists.items() if versions}
    if not lists:
        raise UserInputError("give at least one version list, e.g. --diffusers 0.41.0,0.42.1")
    lengths = {len(v) for v in lists.values() if len(v) > 1}
    if len(lengths) > 1:
        detail = ", ".join(f"--{n}: {len(v)}" for n, v in lists.items())
        raise UserInputError(f"version lists of different lengths ({detail}); give equal lengths")
    count = max(len(v) for v in lists.values())
    if count < 2:
        raise UserInputError("a matrix needs at least two version sets to compare")
    return [
        {
            name: versions[i] if len(versions) > 1 else versions[0]
            for name, versions in lists.items()
        }
        for i in range(count)
    ]


@dataclass
class MatrixEntry:
    env: LayeredEnv
    run_dir: Path | None = None


def run_in_env(env: LayeredEnv, config: Path, out: Path, log: Path) -> Path:
    """`<env>/bin/python -m bench run CONFIG --out OUT --no-score`; returns the new run folder.

    OUT is a fresh folder per version set, so the run folder is its only subfolder with a
    manifest; the output goes to LOG rather than being parsed.
    """
    out.mkdir(parents=True, exist_ok=True)
    before = {p for p in out.iterdir() if p.is_dir()}
    command = [str(env.python), "-m", "bench", "run", str(config), "--out", str(out), "--no-score"]
    with log.open("w", encoding="utf-8") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    created = [
        p for p in out.iterdir() if p.is_dir() and p not in before and (p / MANIFEST).is_file()
    ]
    if result.returncode != 0 or len(created) != 1:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise UserInputError(
            f"bench run in {env.label} failed (exit {result.returncode}, log {log}): "
            + " | ".join(tail)
        )
    return created[0]


def check_labels(env: LayeredEnv, run_dir: Path) -> None:
    """The manifest must record the pinned versions: the label is the manifest's, not ours."""
    packages = (read_manifest(run_dir).get("environment") or {}).get("packages") or {}
    for name, version in env.pins.items():
        if strip_local(packages.get(name)) != strip_local(version):
            raise UserInputError(
                f"{run_dir}: manifest records {name} {packages.get(name)}, expected {version}"
            )


def run_matrix(
    config: Path,
    sets: list[dict[str, str]],
    out: Path,
    thresholds: Thresholds | None = None,
    console: Console | None = None,
) -> tuple[list[MatrixEntry], list[Comparison]]:
    """Build every environment, run the config in each, compare consecutive pairs."""
    console = console or Console(stderr=True)
    if not config.is_file():
        raise UserInputError(f"{config}: config file not found")
    load_config(config)  # a config error costs one line here, not a build and a failed run
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: a file; expected a folder for the runs")
    entries: list[MatrixEntry] = []
    for pins in sets:
        console.print(f"environment {pins_label(pins)} ...")
        entry = MatrixEntry(ensure_env(pins))
        console.print(f"  {resolution_line(entry.env)}")
        entries.append(entry)
    for entry in entries:
        label = entry.env.label
        console.print(f"running {config} with {label} ...")
        target = out / label
        entry.run_dir = run_in_env(entry.env, config.resolve(), target, target / "run.log")
        check_labels(entry.env, entry.run_dir)
    runs = [e.run_dir for e in entries if e.run_dir is not None]
    comparisons = [
        compare_runs(before, after, thresholds) for before, after in itertools.pairwise(runs)
    ]
    return entries, comparisons


def resolution_line(env: LayeredEnv) -> str:
    """What the environment holds that the base does not: `diffusers 0.42.1 -> 0.41.0, ...`."""
    moved = [f"{name} {old or '(none)'} -> {new}" for name, (old, new) in env.resolved.items()]
    return "resolved: " + (", ".join(moved) if moved else "the base environment as it is")


def matrix_summary(entries: list[MatrixEntry], comparisons: list[Comparison]) -> dict[str, Any]:
    return {
        "schema": 1,
        "kind": "matrix",
        "environments": [
            {
                "label": e.env.label,
                "pins": e.env.pins,
                "packages": e.env.packages,
                "resolved": {
                    name: {"base": old, "version": new}
                    for name, (old, new) in e.env.resolved.items()
                },
                "path": str(e.env.path),
                "run_dir": str(e.run_dir) if e.run_dir else None,
            }
            for e in entries
        ],
        "comparisons": [c.as_dict() for c in comparisons],
        "exit_code": max([c.exit_code for c in comparisons], default=0),
    }
