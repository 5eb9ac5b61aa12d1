"""Regression checks between runs (`bench compare`) and across library versions (`bench matrix`).

`compare_runs(base_dir, cand_dir)` is the library entry point; `command.compare_command` and
`matrix.matrix_command` are the typer commands the CLI registers. Docs: docs/compare.md.
"""

from bench.compare.verdicts import CellComparison, Comparison, Thresholds, compare_runs

__all__ = ["CellComparison", "Comparison", "Thresholds", "compare_runs"]
