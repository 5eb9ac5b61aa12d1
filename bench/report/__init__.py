"""Reports people read: `build_report(run_dir, out_dir)` and the `bench report` command.

Modules, one job each: data (read the run), tables, plots, grids, claims, published, overview,
document (the content), markdown and html (the formats), build (atomic write), command (CLI).
"""

from __future__ import annotations

from bench.report.build import build_report
from bench.report.command import report_command

__all__ = ["build_report", "report_command"]
