"""The public Python API: the stages of `bench` as functions that return what they made.

`run` / `resume` make a run folder, `load_run` reads it into pandas tables, `score`, `report`,
`compare` and `size` are the later stages. They print nothing but progress, never exit, and
raise typed errors (bench.errors.UserInputError and its subclasses) for bad input, so they
compose in scripts and notebooks; the `bench` command (bench.cli) is a shell over the same
calls. Every import is inside its function: `import bench` loads neither torch nor pandas.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bench import arguments
from bench.errors import ArgumentError, UserInputError
from bench.runner.executor import resume_run, run_config
from bench.sizing.options import size_options
from bench.sizing.recommend import Option

if TYPE_CHECKING:
    from bench.comparison.verdicts import Comparison
    from bench.run_tables import RunTables

PathLike = str | Path
F = TypeVar("F", bound=Callable[..., Any])

#: Options that stages' own checks still name as the `bench` command spells them, and the
#: parameter each is here: their errors are reported naming the parameter instead.
_OPTION_PARAMETERS = {
    "--only": "only",
    "--time-factor": "time_factor",
    "--memory-factor": "memory_factor",
    "--energy-factor": "energy_factor",
    "--alpha": "alpha",
    "--quality-margin": "quality_margins",
    "--memory-band": "memory_bands",
}


@contextmanager
def _parameters_named(function: str) -> Iterator[None]:
    """Bad input raised inside `function` names its parameter (``run(only=...): ...``), never
    the command-line option the same check names for `bench`."""
    try:
        yield
    except ArgumentError as exc:
        raise exc.as_parameter(function) from None
    except UserInputError as exc:
        message = str(exc)
        for option, parameter in _OPTION_PARAMETERS.items():
            if message.startswith((f"{option}:", f"{option} ")):
                rest = message[len(option) :].lstrip(": ")
                raise ArgumentError(parameter, rest).as_parameter(function) from exc
        raise


def _api(function: F) -> F:
    """An API function: its bad input names its parameters."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _parameters_named(function.__name__):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _console(value: Any) -> Any:
    """None or a rich Console (progress is printed to it)."""
    if value is None:
        return None
    from rich.console import Console  # rich: only when a console is given

    if not isinstance(value, Console):
        raise ArgumentError("console", f"expected a rich.console.Console (got {value!r})")
    return value


@_api
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

    # A bare string is one variant's name, never the list of its characters.
    names = arguments.names(only, "only")
    config_path = arguments.path(config, "config") if config is not None else None
    console = _console(console)
    if resume is not None:
        run_dir = arguments.path(resume, "resume")
        return resume_run(run_dir, console=console, config_path=config_path, only=names)
    if config_path is None:
        raise ArgumentError("config", "give a config file (or resume=RUN_DIR)")
    return run_config(config_path, arguments.path(out, "out"), only=names, console=console)


@_api
def resume(run_dir: PathLike, *, only: Sequence[str] | None = None, console: Any = None) -> Path:
    """Run what `run_dir` still misses (an interrupted run), with its manifest's config."""

    names = arguments.names(only, "only")
    return resume_run(arguments.path(run_dir, "run_dir"), console=_console(console), only=names)


@_api
def load_run(run_dir: PathLike) -> RunTables:
    """A run folder as tables: `.cells` (one row per cell: status, median s/image with IQR and
    n, load time, memory peaks per phase and counter), `.images` (one row per image record, raw
    values), `.scores` (one row per score row of scores.jsonl; empty if the run is unscored)."""
    from bench.run_tables import read_tables  # deferred: loads pandas

    return read_tables(arguments.path(run_dir, "run_dir"))


@_api
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
    from bench.scoring import score_run  # deferred: loads torch, PIL

    weights = None
    if inception_weights is not None:
        weights = arguments.path(inception_weights, "inception_weights")
    return score_run(
        arguments.path(run_dir, "run_dir"),
        arguments.names(metrics, "metrics"),  # a bare string is one metric (or "psnr,ssim")
        arguments.flag(progress, "progress"),
        clip_model=arguments.text(clip_model, "clip_model") if clip_model is not None else None,
        features=arguments.text(features, "features"),
        inception_weights=weights,
    )


@_api
def report(run_dir: PathLike, out: PathLike | None = None) -> Path:
    """Write report.md, report.html, table.csv and the plots into `out` (default
    reports/<run-id>); returns the report folder."""
    from bench.reporting.build import build_report, default_out_dir  # deferred: loads torch, PIL

    run_dir = arguments.path(run_dir, "run_dir")
    out_dir = arguments.path(out, "out") if out is not None else default_out_dir(run_dir)
    return build_report(run_dir, out_dir)


@_api
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
    cell's verdicts; `bench.comparison.render` turns it into text, Markdown or JSON.
    """
    from bench.comparison.thresholds import thresholds_from_options  # deferred: loads pandas, scipy
    from bench.comparison.verdicts import compare_runs  # deferred: loads pandas, scipy

    # Types and finiteness here (a NaN would compare false with everything, and infinite MiB
    # cannot become bytes); each threshold's own range is the stage's to check.
    factors = {
        name: arguments.finite(value, name)
        for name, value in (
            ("time_factor", time_factor),
            ("memory_factor", memory_factor),
            ("energy_factor", energy_factor),
            ("alpha", alpha),
        )
    }
    margins = arguments.number_map(quality_margins, "quality_margins") or {}
    bands = arguments.number_map(memory_bands, "memory_bands") or {}
    thresholds = thresholds_from_options(
        **factors,
        memory_min_mib=memory_min_mib,
        quality_margin=[f"{k}={v!r}" for k, v in margins.items()],
        quality_metric=arguments.names(quality_metrics, "quality_metrics") or [],
        memory_band=[f"{k}={v!r}" for k, v in bands.items()],
    )
    old_dir, new_dir = arguments.path(old, "old"), arguments.path(new, "new")
    return compare_runs(old_dir, new_dir, thresholds, force=arguments.flag(force, "force"))


@_api
def size(
    *,
    model: str | None = None,
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
    speedups: Sequence[str] | None = None,
) -> list[Option]:
    """Every variant × offload option of `model` (default flux-dev; or of `runs`' variants,
    with their measured s/image, and then no `model` nor `quant`) ranked for `vram` ("16GiB")
    or `gpu` ("RTX 4090"): fitting ones first, fastest first. Each option has `.variant`,
    `.offload`, `.fits`, `.reason`, `.peak_bytes` and the `.prediction` with its named terms.
    Without a budget nothing fits (predictions only). `num_frames`: one video's frames for a
    video family (None: its default, Wan 81). `speedups`: what each keeps on the device is
    added, as `bench size --speedup` takes them: a kind ("lora"), a cache method
    ("first_block", "taylorseer") or a config's mapping ("{kind: lora, rank: 32}")."""

    return size_options(  # checks every argument, naming it (a bare string is one name)
        model=model,
        vram=vram,
        gpu=gpu,
        quant=quant,  # type: ignore[arg-type]
        runs=runs,  # type: ignore[arg-type]
        offload=offload,  # type: ignore[arg-type]
        height=height,
        width=width,
        batch=batch,
        max_sequence_length=max_sequence_length,
        margin=margin,
        num_frames=num_frames,
        speedups=speedups,  # type: ignore[arg-type]
    ).options
