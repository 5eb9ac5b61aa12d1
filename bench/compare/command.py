"""`bench compare BASE_RUN CAND_RUN`: the regression gate a CI job runs after two sweeps.

Exit status is the interface: 0 no regression, 1 at least one regression, 2 the runs are not
comparable (or the input is not a run folder). `--force` compares anyway and exits 0/1, but
still prints every difference first, so a forced result can never pass for a clean one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import fail
from bench.compare.memory import DEFAULT_BANDS
from bench.compare.render import print_comparison, report_console, to_json, to_markdown
from bench.compare.verdicts import DEFAULT_QUALITY_MARGINS, Thresholds, compare_runs
from bench.errors import UserInputError
from bench.size.units import MIB


def parse_margins(items: list[str] | None) -> dict[str, float]:
    """`psnr=0.3` items over the defaults; a bad item is a user error naming it."""
    margins = dict(DEFAULT_QUALITY_MARGINS)
    for item in items or []:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            try:
                if not sep:
                    raise ValueError
                margins[name.strip()] = float(value)
            except ValueError:
                raise UserInputError(
                    f"--quality-margin {part!r}: expected METRIC=VALUE, e.g. psnr=0.5"
                ) from None
    return margins


def parse_bands(items: list[str] | None) -> dict[str, float]:
    """`host_rss=1.08` items over the default A/A noise bands; names and values checked."""
    bands = dict(DEFAULT_BANDS)
    for item in items or []:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            try:
                if not sep or name not in bands:
                    raise ValueError
                band = float(value)
                if not band >= 1.0:
                    raise ValueError
            except ValueError:
                raise UserInputError(
                    f"--memory-band {part!r}: expected COUNTER=RATIO with RATIO >= 1 and "
                    f"COUNTER one of {', '.join(bands)}, e.g. host_rss=1.10"
                ) from None
            bands[name] = band
    return bands


def check_factor(name: str, value: float) -> None:
    if not value > 1.0:
        raise UserInputError(f"--{name} {value!r}: expected a factor above 1, e.g. 1.10")


def write_text_atomic(path: Path, text: str) -> None:
    """Whole file or nothing: written beside the target, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def compare_command(
    base_run: Annotated[Path, typer.Argument(help="run folder of the baseline (the old release)")],
    cand_run: Annotated[Path, typer.Argument(help="run folder of the candidate (the new one)")],
    time_factor: Annotated[
        float,
        typer.Option(help="slower/faster only if the median time ratio is beyond this factor"),
    ] = 1.10,
    memory_factor: Annotated[
        float, typer.Option(help="bigger/smaller only if the peak memory ratio is beyond this")
    ] = 1.05,
    memory_min_mib: Annotated[
        float, typer.Option(help="... and the peak differs by more than this many MiB")
    ] = 32.0,
    energy_factor: Annotated[
        float, typer.Option(help="like --time-factor, for NVML energy per image")
    ] = 1.10,
    memory_band: Annotated[
        list[str] | None,
        typer.Option(
            "--memory-band",
            help="COUNTER=RATIO, repeatable: 1 + the noise of a memory counter between "
            "identical runs, as benchmarks/compare_aa.py measures it (defaults: "
            + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_BANDS.items())
            + ")",
        ),
    ] = None,
    quality_margin: Annotated[
        list[str] | None,
        typer.Option(
            "--quality-margin",
            help="METRIC=VALUE, repeatable: smallest mean score change that counts "
            "(defaults: "
            + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_QUALITY_MARGINS.items())
            + ")",
        ),
    ] = None,
    quality_metric: Annotated[
        list[str] | None,
        typer.Option(
            "--quality-metric", help="compare only these per-image metrics (default: all scored)"
        ),
    ] = None,
    alpha: Annotated[
        float, typer.Option(help="significance level of the Mann-Whitney U test")
    ] = 0.05,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the comparison as JSON to this file")
    ] = None,
    markdown_out: Annotated[
        Path | None, typer.Option("--markdown", help="write the comparison as Markdown")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="compare runs that are not comparable (exit 0/1)")
    ] = False,
) -> None:
    """Compare two runs cell by cell; exit 1 on a regression, 2 when they are not comparable."""
    try:
        for name, value in (
            ("time-factor", time_factor),
            ("memory-factor", memory_factor),
            ("energy-factor", energy_factor),
        ):
            check_factor(name, value)
        if not 0.0 < alpha < 1.0:
            raise UserInputError(f"--alpha {alpha!r}: expected a level between 0 and 1")
        metrics = [m.strip() for item in quality_metric or [] for m in item.split(",")]
        thresholds = Thresholds(
            time_factor=time_factor,
            memory_factor=memory_factor,
            memory_min_bytes=int(memory_min_mib * MIB),
            energy_factor=energy_factor,
            alpha=alpha,
            quality_margins=parse_margins(quality_margin),
            quality_metrics=tuple(metrics) if metrics else None,
            memory_bands=parse_bands(memory_band),
        )
        comparison = compare_runs(base_run, cand_run, thresholds, force=force)
    except UserInputError as exc:
        raise fail(str(exc)) from None
    console = report_console()
    print_comparison(comparison, console)
    if json_out is not None:
        write_text_atomic(json_out, to_json(comparison))
    if markdown_out is not None:
        write_text_atomic(markdown_out, to_markdown(comparison))
    raise typer.Exit(comparison.exit_code)
