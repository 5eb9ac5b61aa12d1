"""The report's content, independent of its format: the Markdown and HTML writers render the
same `Report`, so the two can never say different things."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.comparison.stats import MIN_PROMPTS
from bench.metrics.stats import METHOD, MIN_INTERVAL_N
from bench.reporting.artifacts import Picture
from bench.reporting.claims import Claim, check_claims
from bench.reporting.data import RunData, has_speedups
from bench.reporting.grids import image_grids
from bench.reporting.overview import (
    PublishedSection,
    facts,
    memory_note,
    published_sections,
    warnings,
)
from bench.reporting.plots import all_plots, speedup_fidelity_plot, speedup_plot
from bench.reporting.speedup_table import (
    SpeedupTable,
    speedup_cells,
    speedup_notes,
    speedup_tables,
)
from bench.reporting.tables import (
    BEFORE_FAILURE,
    display_table,
    failure_notes,
    interval_methods,
    omitted_columns,
    quality_gaps,
    raw_table,
)

TABLE_CSV = "table.csv"


@dataclass(frozen=True)
class SpeedupSection:
    """Each speed-up against its twin: one table per variant, how to read them, the plot."""

    tables: list[SpeedupTable]
    notes: list[str]
    plots: list[Picture]


@dataclass(frozen=True)
class Report:
    title: str
    facts: list[tuple[str, str]]
    warnings: list[str]
    raw_table: pd.DataFrame  # table.csv
    table: pd.DataFrame
    table_notes: list[str]
    failures: list[str]
    plots: list[Picture]
    grids: list[Picture]
    claims: list[Claim]
    published: list[PublishedSection]
    speedups: SpeedupSection | None = None  # only for a run with speed-ups


def quality_note(run: RunData) -> str:
    """How the quality figures were made, the interval's method included."""
    methods = interval_methods(run)
    text = (
        "Quality: mean over prompts (repeats of a prompt averaged first), from "
        "scores_summary.json; PSNR/SSIM/LPIPS are paired with the full-precision image of the "
        "same prompt and seed. 'reference' = the full-precision cell itself. "
    )
    if METHOD in methods:
        text += (
            f"Brackets: the 95% interval over prompts, {METHOD} = the wider at each end of the "
            "Student-t and the studentized bootstrap interval, which covers the true mean in "
            "94-98% of simulated cases from 4 prompts up (benchmarks/interval_coverage.py). "
        )
    old = [m for m in methods if m != METHOD]
    if old:
        text += (
            f"Brackets from {', '.join(old)}: an interval made before that covered as little "
            "as half the time at 2-5 prompts; `bench score` on this run recomputes it. "
        )
    return text + f"No interval below {MIN_INTERVAL_N} prompts."


def few_prompts_note(run: RunData) -> str | None:
    """What a run with fewer prompts than `bench compare` judges quality on can and cannot
    show (the demo has 2): said once, under the table, so no figure is read for more."""
    prompts = len(run.manifest.get("prompts") or [])
    if prompts >= MIN_PROMPTS:
        return None
    repeats = (run.manifest.get("config") or {}).get("repeats")
    images = f" × {repeats} repeats" if repeats else ""
    cannot = [f"a quality verdict from `bench compare` (it needs {MIN_PROMPTS} prompts)"]
    if prompts < MIN_INTERVAL_N:
        cannot.insert(
            0,
            f"a 95% interval (none below {MIN_INTERVAL_N} prompts: with 2, a bootstrap "
            "interval is the two values' range and holds the mean half the time)",
        )
    minimums = {
        row["metric"]: row.get("minimum")
        for row in run.quality.values()
        if row.get("status") == "too_few_samples" and row.get("minimum")
    }
    if minimums:
        needs = ", ".join(f"{m} {n}" for m, n in sorted(minimums.items()))
        cannot.append(f"FID/KID/CMMD (images per cell needed: {needs})")
    return (
        f"This run has {prompts} prompt(s){images}. It can show each cell's mean fidelity to "
        "full precision over these prompts, whether a cell is identical to it, and the images "
        "side by side. It cannot show " + "; ".join(cannot) + ". Repeats of a prompt share "
        "its content: they add images, not prompts. Quality claims need a prompt set "
        "(configs/prompts/diverse-64.yaml)."
    )


def table_notes(run: RunData) -> list[str]:
    notes = [
        memory_note(run),
        f"{BEFORE_FAILURE} = peak reached before the cell failed, not the memory it needs to run.",
        "s/image: median wall time of the measured images (warm-up excluded), interquartile "
        "range in brackets; n images = measured images that ran ok."
        if not run.video
        else "s/video: median wall time of one whole video (text encoding, every step, VAE "
        "decode of every frame; warm-up excluded), interquartile range in brackets; s/frame = "
        "s/video / frames; n videos = measured videos that ran ok. Quality: per video, the mean "
        "over its frames (the interval is over prompts), and the worst single frame of any "
        "video beside it.",
        "Load: from the first from_pretrained/from_single_file call until the pipeline is ready "
        "with offload applied.",
        "Transformer size: the GGUF file for quantized variants; for full precision, the "
        "transformer's tensors as loaded (no file of its own in the run). Bits/weight = 8 × bytes "
        "/ parameters.",
        quality_note(run),
        f"Raw numbers (bytes, seconds, joules, and GiB beside them): {TABLE_CSV}.",
    ]
    few = few_prompts_note(run)
    if few:
        notes.append(few)
    notes += [f"Quality gap, {gap}" for gap in quality_gaps(run)]
    notes += omitted_columns(run)
    return notes


def build_document(run: RunData, out_dir: Path) -> Report:
    """Compute every section; pictures are written into `out_dir` as a side effect."""
    raw = raw_table(run)
    return Report(
        title=f"Benchmark report: {run.run_id}",
        facts=facts(run),
        warnings=warnings(run),
        raw_table=raw,
        table=display_table(run, raw),
        table_notes=table_notes(run),
        failures=failure_notes(run),
        plots=all_plots(run, out_dir),
        grids=image_grids(run, out_dir),
        claims=check_claims(run),
        published=published_sections(run),
        speedups=speedup_section(run, out_dir),
    )


def speedup_section(run: RunData, out_dir: Path) -> SpeedupSection | None:
    """None for a run without speed-ups (its report is as before they existed)."""
    if not has_speedups(run):
        return None
    cells = speedup_cells(run)
    return SpeedupSection(
        speedup_tables(run, cells),
        speedup_notes(run, cells),
        [speedup_plot(run, cells, out_dir), speedup_fidelity_plot(run, cells, out_dir)],
    )
