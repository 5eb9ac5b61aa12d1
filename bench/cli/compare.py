"""`bench compare BASE_RUN CAND_RUN` and `bench matrix CONFIG --diffusers A,B`.

`bench compare` is the regression gate a CI job runs after two sweeps. Exit status is the
interface: 0 no regression, 1 at least one regression, 2 the runs are not comparable (or the
input is not a run folder). `--force` compares anyway and exits 0/1, but still prints every
difference first, so a forced result can never pass for a clean one. `bench matrix` runs one
config per version set (bench.comparison.releases) and compares consecutive sets.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bench.arguments import output_file
from bench.cli.errors import reports_user_errors
from bench.comparison.defaults import DEFAULT_BANDS, DEFAULT_QUALITY_MARGINS, TIME_PROCESS_BANDS


def write_text_atomic(path: Path, text: str) -> None:
    """Whole file or nothing: written beside the target, then renamed (the temporary file
    removed when either fails)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_outputs(json_out: Path | None, markdown_out: Path | None) -> None:
    """--json and --markdown targets that can be written (a user error naming the option)."""
    for option, target in (("--json", json_out), ("--markdown", markdown_out)):
        if target is not None:
            output_file(target, option.removeprefix("--"), option=option)


def _defaults_option(option: str, text: str, defaults: Mapping[str, float], rest: str = "") -> Any:
    """A repeatable NAME=VALUE option whose help ends with the defaults it overrides."""
    listed = ", ".join(f"{name}={value:g}" for name, value in defaults.items())
    return typer.Option(option, help=f"{text} (defaults: {listed}{rest})")


@reports_user_errors()
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
        _defaults_option(
            "--memory-band",
            "COUNTER=RATIO, repeatable: 1 + the noise of a memory counter between identical "
            "runs, as benchmarks/compare_aa.py measures it",
            DEFAULT_BANDS,
        ),
    ] = None,
    time_band: Annotated[
        list[str] | None,
        _defaults_option(
            "--time-band",
            "DEVICE=RATIO, repeatable: how far identical runs of a cell differ in time on this "
            "device type, as benchmarks/compare_aa.py measures it",
            TIME_PROCESS_BANDS,
            "; other devices: the factor alone",
        ),
    ] = None,
    quality_margin: Annotated[
        list[str] | None,
        _defaults_option(
            "--quality-margin",
            "METRIC=VALUE, repeatable: smallest mean score change that counts",
            DEFAULT_QUALITY_MARGINS,
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
    # The comparison's modules are imported here, not with the command's options: its --help
    # needs only the defaults.
    from bench.comparison.render import (  # deferred: pandas, scipy
        print_comparison,
        report_console,
        to_json,
        to_markdown,
    )
    from bench.comparison.thresholds import thresholds_from_options  # deferred: pandas, scipy
    from bench.comparison.verdicts import compare_runs  # deferred: pandas, scipy

    _check_outputs(json_out, markdown_out)  # before the comparison, not after it is printed
    thresholds = thresholds_from_options(
        time_factor=time_factor,
        memory_factor=memory_factor,
        memory_min_mib=memory_min_mib,
        energy_factor=energy_factor,
        alpha=alpha,
        quality_margin=quality_margin,
        quality_metric=quality_metric,
        memory_band=memory_band,
        time_band=time_band,
    )
    comparison = compare_runs(base_run, cand_run, thresholds, force=force)
    console = report_console()
    print_comparison(comparison, console)
    if json_out is not None:
        write_text_atomic(json_out, to_json(comparison))
    if markdown_out is not None:
        write_text_atomic(markdown_out, to_markdown(comparison))
    raise typer.Exit(comparison.exit_code)


@reports_user_errors()
def matrix_command(
    config: Annotated[Path, typer.Argument(help="YAML config run in every environment")],
    diffusers: Annotated[
        list[str] | None,
        typer.Option("--diffusers", help="versions, comma-separated or repeated, in order"),
    ] = None,
    transformers: Annotated[
        list[str] | None, typer.Option("--transformers", help="versions, zipped with the others")
    ] = None,
    torch: Annotated[
        list[str] | None,
        typer.Option("--torch", help="versions (installs torch builds: large downloads)"),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="folder receiving <versions>/<run-id>/ and matrix.json")
    ] = Path("results/matrix"),
    time_factor: Annotated[float, typer.Option(help="as in `bench compare`")] = 1.10,
    memory_factor: Annotated[float, typer.Option(help="as in `bench compare`")] = 1.05,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the summary JSON here")
    ] = None,
    markdown_out: Annotated[
        Path | None, typer.Option("--markdown", help="write every pair's Markdown here")
    ] = None,
) -> None:
    """Run CONFIG once per version set and compare consecutive sets; exit 1 on a regression."""
    from bench.comparison.releases import (  # deferred: pandas, scipy
        matrix_summary,
        run_matrix,
        version_sets,
    )
    from bench.comparison.render import (  # deferred: pandas, scipy
        clean_json,
        print_comparison,
        report_console,
        to_markdown,
    )
    from bench.comparison.thresholds import check_factor  # deferred: pandas, scipy
    from bench.comparison.verdicts import Thresholds  # deferred: pandas, scipy

    sets = version_sets({"diffusers": diffusers, "transformers": transformers, "torch": torch})
    _check_outputs(json_out, markdown_out)  # before environments are built and runs made
    check_factor("time-factor", time_factor)
    check_factor("memory-factor", memory_factor)
    thresholds = Thresholds(time_factor=time_factor, memory_factor=memory_factor)
    entries, comparisons = run_matrix(config, sets, out, thresholds)
    console = report_console()
    for comparison in comparisons:
        print_comparison(comparison, console)
        console.print()
    table = Table(title="matrix", title_justify="left")
    for column in ("from", "to", "regressions", "improvements", "exit"):
        table.add_column(column)
    for (before, after), comparison in zip(itertools.pairwise(entries), comparisons, strict=False):
        table.add_row(
            before.env.label,
            after.env.label,
            ", ".join(f"{c} {a}" for c, a in comparison.regressions) or "-",
            str(len(comparison.improvements)),
            str(comparison.exit_code),
        )
    console.print(table)
    summary = clean_json(matrix_summary(entries, comparisons))
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
    write_text_atomic(out / "matrix.json", text)
    if json_out is not None:
        write_text_atomic(json_out, text)
    if markdown_out is not None:
        write_text_atomic(markdown_out, "\n".join(to_markdown(c) for c in comparisons))
    raise typer.Exit(summary["exit_code"])
