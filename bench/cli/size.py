"""`bench size`: predict, check and recommend, as rich tables and JSON.

Three modes, by option: `--check RUN_DIR` compares predictions with a run's measurements;
`--vram SIZE` / `--gpu NAME` lists what fits; neither prints the predicted terms of each
configuration. Everything is computed from configs and GGUF headers, so it runs without a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bench.arguments import output_file
from bench.cli.errors import reports_user_errors
from bench.errors import ArgumentError
from bench.results import write_json_atomic
from bench.sizing.options import size_options
from bench.sizing.terms import Prediction
from bench.sizing.units import fmt_bytes


@reports_user_errors()
def size_command(
    check: Annotated[
        Path | None, typer.Option("--check", help="compare predictions with a run folder")
    ] = None,
    vram: Annotated[
        str | None, typer.Option(help="GPU memory to fit, e.g. 12GiB, 12 GB, 16384MiB")
    ] = None,
    gpu: Annotated[
        str | None, typer.Option(help='a card from the built-in table, e.g. "RTX 4080"')
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="built-in architecture or a diffusers folder [default: flux-dev]"),
    ] = None,
    quant: Annotated[
        list[str] | None,
        typer.Option(help="GGUF types to size for --model (default Q8_0 Q6_K Q5_K_S Q4_K_S)"),
    ] = None,
    runs: Annotated[
        list[Path] | None,
        typer.Option("--runs", help="run folders: their variants, measured s/image and scores"),
    ] = None,
    offload: Annotated[
        list[str] | None,
        typer.Option(
            help="offload modes (default none, model, group-block1, group-leaf, sequential)"
        ),
    ] = None,
    height: Annotated[
        int | None,
        typer.Option(help="default: the pipeline's own (1024; Wan 480)", show_default=False),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(help="default: the pipeline's own (1024; Wan 832)", show_default=False),
    ] = None,
    batch: Annotated[int, typer.Option(help="images per prompt (1 to 1024)")] = 1,
    max_sequence_length: Annotated[int, typer.Option(help="1 to 512")] = 512,
    frames: Annotated[
        int | None,
        typer.Option("--frames", help="frames of one video (video models; default 81 for Wan)"),
    ] = None,
    margin: Annotated[float, typer.Option(help="share of the VRAM kept free (0 to 0.9)")] = 0.1,
    speedup: Annotated[
        list[str] | None,
        typer.Option(
            "--speedup",
            help="add what a speed-up keeps on the device: lora, first_block, taylorseer, or a "
            "config's mapping like '{kind: lora, adapters: 2, rank: 32}' (docs/speedups.md)",
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write JSON here")] = None,
) -> None:
    """Predict peak VRAM without a GPU, check it against a run, or list what fits a card.

    Values are checked by the library (bench.sizing.options), not by typer's bounds, so a bad
    one is the same single `error:` line as every other bad input."""
    console = Console()
    if json_out is not None:
        output_file(json_out, "json", option="--json")  # before the tables, not after them
    if check is not None:
        _check_alone(vram, gpu, model, quant, runs, offload, height, width, frames, speedup)
        payload = _check(check, console)
    else:
        payload = _predict_or_recommend(
            vram, gpu, model, quant, runs, offload, height, width, batch,
            max_sequence_length, margin, console, frames, speedup,
        )  # fmt: skip
    if json_out is not None:
        write_json_atomic(json_out, payload)
        console.print(f"JSON: {json_out}")


def _check_alone(*options: Any) -> None:
    """--check compares a run's cells with their predictions at the run's own settings: any
    option of the other modes would be silently ignored."""
    if any(option is not None for option in options):
        raise ArgumentError(
            "check",
            "sizes the run's own cells at their own settings; drop --vram, --gpu, --model, "
            "--quant, --runs, --offload, --height, --width, --frames and --speedup",
        )


def _predict_or_recommend(
    vram: str | None,
    gpu: str | None,
    model: str | None,
    quant: list[str] | None,
    runs: list[Path] | None,
    offload: list[str] | None,
    height: int | None,
    width: int | None,
    batch: int,
    max_sequence_length: int,
    margin: float,
    console: Console,
    frames: int | None = None,
    speedups: list[str] | None = None,
) -> dict[str, Any]:
    result = size_options(
        model=model, vram=vram, gpu=gpu, quant=quant, runs=runs, offload=offload,
        height=height, width=width, batch=batch, max_sequence_length=max_sequence_length,
        margin=margin, num_frames=frames, speedups=speedups,
    )  # fmt: skip
    if result.budget_bytes is None:
        _print_predictions(result.options, result.settings, console)
    else:
        _print_recommendation(result.fitting, result.not_fitting, result.budget_label, margin,
                              result.settings, console)  # fmt: skip
    return result.to_json()


def _terms_table(pred: Prediction, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("term")
    table.add_column("size", justify="right")
    table.add_column("why")
    for term in pred.terms:
        table.add_row(term.name, fmt_bytes(term.bytes), term.explanation)
    table.add_row("[b]total (NVML used)[/b]", f"[b]{fmt_bytes(pred.total_bytes)}[/b]", "")
    table.add_row("torch reserved", fmt_bytes(pred.reserved_bytes), "total less the context")
    return table


def _settings_line(settings: dict[str, Any]) -> str:
    frames = f"{settings['num_frames']} frames of " if settings.get("num_frames") else ""
    speedups = ", ".join(s["name"] for s in settings.get("speedups", []))
    return (
        f"{frames}{settings['height']}×{settings['width']}, batch {settings['batch']}, "
        f"max_sequence_length {settings['max_sequence_length']}"
        + (f", with {speedups}" if speedups else "")
    )


def _print_predictions(options: list, settings: dict[str, Any], console: Console) -> None:
    table = Table(title=f"predicted peak VRAM, {_settings_line(settings)}", title_justify="left")
    for col in ("variant", "offload", "peak (NVML)", "peak phase", "largest term", "file"):
        table.add_column(col, justify="right" if col.startswith("peak (") else "left")
    for o in sorted(options, key=lambda o: (o.variant, o.offload)):
        big = o.prediction.largest_term()
        table.add_row(
            o.variant,
            o.offload,
            fmt_bytes(o.prediction.total_bytes),
            o.prediction.peak_phase,
            f"{big.name} {fmt_bytes(big.bytes)}",
            _file_cell(o),
        )
    console.print(table)
    if len(options) <= 4:
        for o in options:
            console.print(_terms_table(o.prediction, o.prediction.label))
    else:
        console.print("narrow with --quant/--offload (4 or fewer) to see every term")


def _file_cell(o: Any) -> str:
    if o.published_file_gb is None:
        return f"{o.transformer_bytes / 1e9:.2f} GB"
    return f"{o.transformer_bytes / 1e9:.2f} GB (published {o.published_file_gb} GB)"


def _quality_cell(quality: dict[str, Any]) -> str:
    parts = []
    for metric, value in quality.items():
        if isinstance(value, int | float):
            parts.append(f"{metric} {value:.3g}")
        elif value == "reference":
            return "reference"
    return ", ".join(parts) or "-"


def _print_recommendation(
    fitting: list,
    others: list,
    budget_label: str | None,
    margin: float,
    settings: dict[str, Any],
    console: Console,
) -> None:
    title = f"fits {budget_label} with {margin:.0%} kept free, {_settings_line(settings)}"
    table = Table(title=title, title_justify="left")
    cols = ("#", "variant", "offload", "peak", "s/image", "quality", "largest term", "transformer")
    for col in cols:
        table.add_column(col, justify="right" if col in ("#", "peak", "s/image") else "left")
    for rank, o in enumerate(fitting, 1):
        m = o.measured
        peak = fmt_bytes(o.peak_bytes) + (
            " measured" if m and m.peak_bytes is not None else " predicted"
        )
        speed = f"{m.median_s:.2f} (n={m.n})" if m and m.median_s is not None else "unknown"
        big = o.prediction.largest_term()
        terms = f"{big.name} {fmt_bytes(big.bytes)}"
        table.add_row(
            str(rank), o.variant, o.offload, peak, speed,
            _quality_cell(m.quality if m else {}), terms, _file_cell(o),
        )  # fmt: skip
    console.print(table)
    if not fitting:
        console.print("nothing fits: every configuration needs more than that (see below)")
    else:
        unknown = [o for o in fitting if o.speed_source == "unknown"]
        if unknown:
            console.print(
                "s/image 'unknown': no run measured it (--runs RUN_DIR adds measurements); "
                "those rows are ordered by offload mode, then larger transformers first"
            )
        best = fitting[0]
        title = f"where the memory goes: {best.prediction.label}"
        console.print(_terms_table(best.prediction, title))
    if others:
        table = Table(title="does not fit", title_justify="left")
        table.add_column("variant")
        table.add_column("offload")
        table.add_column("why")
        for o in others:
            table.add_row(o.variant, o.offload, o.reason or "")
        console.print(table)


def _check(run_dir: Path, console: Console) -> dict[str, Any]:
    from bench.sizing.check import check_run  # deferred: loads pandas

    checks = check_run(run_dir)
    table = Table(title=f"predicted vs measured: {run_dir.name}", title_justify="left")
    for col in (
        "cell", "status", "weights pred", "weights loaded", "pred NVML", "NVML−baseline",
        "err", "pred reserved", "torch reserved", "err",
    ):  # fmt: skip
        table.add_column(col, justify="left" if col in ("cell", "status") else "right")

    def fmt(n: int | None) -> str:
        return fmt_bytes(n) if n is not None else "-"

    def pct(x: float | None) -> str:
        return f"{x:+.1%}" if x is not None else "-"

    for c in checks:
        wp = sum(c.weights_predicted.values())
        wl = sum(c.weights_loaded.values()) if c.weights_loaded else None
        mark = {True: " ✓", False: " ✗", None: ""}[c.weights_match]
        table.add_row(
            c.cell_id,
            c.status,
            fmt(wp),
            fmt(wl) + mark,
            fmt(c.prediction.total_bytes if c.prediction else None),
            fmt(c.nvml_measured),
            pct(c.nvml_error),
            fmt(c.prediction.reserved_bytes if c.prediction else None),
            fmt(c.reserved_measured),
            pct(c.reserved_error),
        )
    console.print(table)
    errors = [abs(c.nvml_error) for c in checks if c.nvml_error is not None]
    if errors:
        console.print(f"largest |error| against NVML: {max(errors):.1%} over {len(errors)} cells")
    else:
        console.print(
            "no GPU measurements in this run: only the weights could be checked "
            "(✓ = predicted bytes equal the bytes each component loaded)"
        )
    mismatched = [c.cell_id for c in checks if c.weights_match is False]
    if mismatched:
        console.print(f"[red]weights differ from the loaded bytes: {', '.join(mismatched)}[/red]")
    return {"run_dir": str(run_dir), "cells": [c.to_json() for c in checks]}
