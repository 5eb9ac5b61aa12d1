"""Regression checks between runs (`bench compare`) and across library versions (`bench matrix`).

`compare_runs(base_dir, cand_dir)` is the library entry point (`thresholds.thresholds_from_options`
validates what people give; `releases.run_matrix` runs one config per version set); the typer
commands are bench/cli/compare.py. Docs: docs/compare.md.

The names below load bench.comparison.verdicts (pandas, scipy) on first use, not with the
package: `bench compare --help` reads its defaults from the light bench.comparison.defaults.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CellComparison", "Comparison", "Thresholds", "compare_runs"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from bench.comparison import verdicts  # deferred: pandas, scipy

    return getattr(verdicts, name)
