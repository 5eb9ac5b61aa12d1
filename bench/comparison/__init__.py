"""Regression checks between runs (`bench compare`) and across library versions (`bench matrix`).

`compare_runs(base_dir, cand_dir)` is the library entry point (`thresholds.thresholds_from_options`
validates what people give; `releases.run_matrix` runs one config per version set); the typer
commands are bench/cli/compare.py. Docs: docs/compare.md.
"""

from bench.comparison.verdicts import CellComparison, Comparison, Thresholds, compare_runs

__all__ = ["CellComparison", "Comparison", "Thresholds", "compare_runs"]
