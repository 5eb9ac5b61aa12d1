"""Reports people read: `build.build_report(run_dir, out_dir)` (the `bench report` command is
bench/cli/report.py).

Modules, one job each: data (read the run), tables, plots, grids, claims, published, overview,
document (the content), markdown and html (the formats), build (atomic write).
"""
