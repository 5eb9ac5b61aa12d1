"""The public Python API: the stages of `bench` as functions that return what they made.

`run` / `resume` make a run folder, `load_run` reads it into pandas tables, `score`, `report`,
`compare` and `size` are the later stages. They print nothing but progress, never exit, and
raise typed errors (bench.errors.UserInputError and its subclasses) for bad input, so they
compose in scripts and notebooks; the `bench` command (bench.cli) is a shell over the same
calls. Every import is inside its function: `import bench` loads neither torch nor pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.compare.verdicts import Comparison
    from bench.run_tables import RunTables
    from bench.size.recommend import Option

PathLike = str | Path


def run(
    config: PathLike | None,
    *,
    resume: PathLike | None = None,
    only: Sequence[str] | None = None,
    out: PathLike = "results",
    console: Any = None,
) -> Path:
    """Sweep `config` (a YAML file) into a new run folder under `out`; returns the folder.

    With `resume=RUN_DIR` the run folder is completed instead (then `config`, if given, must be
    the run's own, as with `bench run CONFIG --resume RUN_DIR`). `only` limits the sweep to
    those variants. Unlike `bench run`, nothing is scored: call `score` next. `console` is the
    rich Console progress goes to (default stderr). Raises UserInputError for bad input and
    bench.runner.interrupt.RunInterrupted (a KeyboardInterrupt) when Ctrl-C stopped the sweep.
    """
    from bench.errors import UserInputError
    from bench.runner.executor import resume_run, run_config

    names = list(only) if only else None
    if resume is not None:
        config_path = Path(config) if config is not None else None
        return resume_run(Path(resume), console=console, config_path=config_path, only=names)
    if config is None:
        raise UserInputError("run: give a config file (or resume=RUN_DIR)")
    return run_config(Path(config), Path(out), only=names, console=console)


def resume(run_dir: PathLike, *, only: Sequence[str] | None = None, console: Any = None) -> Path:
    """Run what `run_dir` still misses (an interrupted run), with its manifest's config."""
    return run(None, resume=run_dir, only=only, console=console)


def load_run(run_dir: PathLike) -> RunTables:
    """A run folder as tables: `.cells` (one row per cell: status, median s/image with IQR and
    n, load time, memory peaks per phase and counter), `.images` (one row per image record, raw
    values), `.scores` (one row per score row of scores.jsonl; empty if the run is unscored)."""
    from bench.run_tables import read_tables

    return read_tables(Path(run_dir))


def score(
    run_dir: PathLike,
    metrics: Sequence[str] | None = None,
    *,
    progress: bool = False,
    clip_model: str | None = None,
    features: str = "clip",
    inception_weights: PathLike | None = None,
) -> Path:
    """Score a run's images (all metrics unless `metrics` names some) as `bench score` does;
    returns the path of scores.jsonl. Resumable: rows already scored are not recomputed."""
    from bench.score import score_run

    weights = Path(inception_weights) if inception_weights is not None else None
    return score_run(
        Path(run_dir),
        list(metrics) if metrics else None,
        progress,
        clip_model=clip_model,
        features=features,
        inception_weights=weights,
    )


def report(run_dir: PathLike, out: PathLike | None = None) -> Path:
    """Write report.md, report.html, table.csv and the plots into `out` (default
    reports/<run-id>); returns the report folder."""
    from bench.report.build import build_report, default_out_dir

    run_dir = Path(run_dir)
    return build_report(run_dir, Path(out) if out is not None else default_out_dir(run_dir))


def compare(
    old: PathLike,
    new: PathLike,
    *,
    time_factor: float = 1.10,
    memory_factor: float = 1.05,
    memory_min_mib: float = 32.0,
    energy_factor: float = 1.10,
    alpha: float = 0.05,
    quality_margins: Mapping[str, float] | None = None,
    quality_metrics: Sequence[str] | None = None,
    memory_bands: Mapping[str, float] | None = None,
    force: bool = False,
) -> Comparison:
    """Compare two run folders cell by cell, as `bench compare` does, without printing.

    The result's `exit_code` is the command's (0 no regression, 1 a regression, 2 not
    comparable), `regressions` / `improvements` list (cell, aspect) pairs, `cells` has every
    cell's verdicts; `bench.compare.render` turns it into text, Markdown or JSON.
    """
    from bench.compare.thresholds import thresholds_from_options
    from bench.compare.verdicts import compare_runs

    thresholds = thresholds_from_options(
        time_factor=time_factor,
        memory_factor=memory_factor,
        memory_min_mib=memory_min_mib,
        energy_factor=energy_factor,
        alpha=alpha,
        quality_margin=[f"{k}={v!r}" for k, v in (quality_margins or {}).items()],
        quality_metric=list(quality_metrics or []),
        memory_band=[f"{k}={v!r}" for k, v in (memory_bands or {}).items()],
    )
    return compare_runs(Path(old), Path(new), thresholds, force=force)


def size(
    *,
    model: str = "flux-dev",
    vram: str | None = None,
    gpu: str | None = None,
    quant: Sequence[str] | None = None,
    runs: Sequence[PathLike] | None = None,
    offload: Sequence[str] | None = None,
    height: int | None = None,
    width: int | None = None,
    batch: int = 1,
    max_sequence_length: int = 512,
    margin: float = 0.1,
    num_frames: int | None = None,
) -> list[Option]:
    """Every variant × offload option of `model` (or of `runs`' variants, with their measured
    s/image) ranked for `vram` ("16GiB") or `gpu` ("RTX 4090"): fitting ones first, fastest
    first. Each option has `.variant`, `.offload`, `.fits`, `.reason`, `.peak_bytes` and the
    `.prediction` with its named terms. Without a budget nothing fits (predictions only).
    `num_frames`: one video's frames for a video family (None: its default, Wan 81)."""
    from bench.size.options import size_options

    return size_options(
        model=model,
        vram=vram,
        gpu=gpu,
        quant=list(quant) if quant else None,
        runs=[Path(r) for r in runs] if runs else None,
        offload=list(offload) if offload else None,
        height=height,
        width=width,
        batch=batch,
        max_sequence_length=max_sequence_length,
        margin=margin,
        num_frames=num_frames,
    ).options
