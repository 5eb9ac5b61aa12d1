"""`bench score RUN_DIR`: score a run's images, then print the cells × metrics table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.cli.errors import reports_user_errors
from bench.metrics import METRICS
from bench.results import SCORES, SCORES_SUMMARY


@reports_user_errors()
def score_command(
    run_dir: Annotated[Path, typer.Argument(help="run folder (results/<run-id>)")],
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metrics",
            help=f"metrics to compute, repeated or comma-separated (default all: "
            f"{', '.join(METRICS)})",
        ),
    ] = None,
) -> None:
    """Score a run's images (fidelity to full precision, CLIP score, FID/KID/CMMD)."""
    from bench.scoring import score_run  # deferred: loads torch

    path = score_run(run_dir, metrics)
    print_summary(path.parent / SCORES_SUMMARY)


def print_summary(summary_path: Path) -> None:
    """Cells × metrics on stdout (mean and its interval, the method named); each distinct
    reason for a gap listed once."""
    from bench.metrics.score_summary import figure  # deferred: loads scipy
    from bench.metrics.stats import method_label  # deferred: loads scipy

    data = json.loads(summary_path.read_text(encoding="utf-8"))
    higher = {row["metric"]: row["higher_is_better"] for row in data["cells"]}
    cells = list(dict.fromkeys(row["cell_id"] for row in data["cells"]))
    by_key = {(row["cell_id"], row["metric"]): row for row in data["cells"]}
    title = f"scores {data.get('run_id')} (mean [{method_label()}])"
    table = Table(title=title, title_justify="left")
    table.add_column("cell")
    for metric, up in higher.items():
        table.add_column(f"{metric} {'↑' if up else '↓'}")
    reasons: dict[str, str] = {}
    for cell_id in cells:
        figures = []
        for metric in higher:
            row = by_key.get((cell_id, metric))
            figures.append(figure(row) if row else "")
            if row and row["status"] not in ("ok", "reference") and row.get("note"):
                reasons.setdefault(f"{metric}: {row['status']}", row["note"])
        table.add_row(cell_id, *figures)
    console = Console()
    console.print(table)
    for what, note in reasons.items():
        console.print(f"  {what}: {note}", highlight=False)
    console.print(f"wrote {summary_path.parent / SCORES} and {summary_path}", highlight=False)
