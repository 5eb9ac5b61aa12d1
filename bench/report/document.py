"""The report's content, independent of its format: the Markdown and HTML writers render the
same `Report`, so the two can never say different things."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report.artifacts import Picture
from bench.report.claims import Claim, check_claims
from bench.report.data import RunData
from bench.report.grids import image_grids
from bench.report.overview import PublishedSection, facts, memory_note, published_sections, warnings
from bench.report.plots import all_plots
from bench.report.tables import (
    BEFORE_FAILURE,
    display_table,
    failure_notes,
    omitted_columns,
    quality_gaps,
    raw_table,
)

TABLE_CSV = "table.csv"


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
        "Quality: mean over prompts with a 95% bootstrap interval over prompts, from "
        "scores_summary.json; PSNR/SSIM/LPIPS are paired with the full-precision image of the "
        "same prompt and seed. 'reference' = the full-precision cell itself.",
        f"Raw numbers (bytes, seconds, joules, and GiB beside them): {TABLE_CSV}.",
    ]
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
    )
