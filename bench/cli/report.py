"""`bench report RUN_DIR [--out DIR]`: the CLI shell over bench.reporting.build_report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli.errors import reports_user_errors


@reports_user_errors()
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="run folder (results/<run-id>)")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="report folder, new or an earlier report's, which is replaced whole "
            "(default: reports/<run-id>)",
        ),
    ] = None,
) -> None:
    """Write report.md, a self-contained report.html and table.csv for a run folder."""
    from bench.reporting.build import build_report, default_out_dir  # deferred: loads torch

    path = build_report(run_dir, out or default_out_dir(run_dir))
    typer.echo(f"report: {path / 'report.html'}")
    typer.echo(f"        {path / 'report.md'}")
    typer.echo(f"        {path / 'table.csv'}")
