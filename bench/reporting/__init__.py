"""Reports people read: `build_report(run_dir, out_dir)` (the `bench report` command is
bench/cli/report.py).

Modules, one job each: data (read the run), tables, plots, grids, claims, published, overview,
document (the content), markdown and html (the formats), build (atomic write).
"""

from __future__ import annotations

from bench.reporting.build import build_report

__all__ = ["build_report"]
