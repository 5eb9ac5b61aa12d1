"""Quantization benchmarking harness for diffusion pipelines.

The public API (bench.api): `run`, `resume`, `load_run`, `score`, `report`, `compare`, `size`.
The stages they call are bench.runner, bench.scoring, bench.reporting, bench.comparison and
bench.sizing (docs/architecture.md).
"""

from __future__ import annotations

from bench.api import compare, load_run, report, resume, run, score, size

__version__ = "0.1.0"
__all__ = ["compare", "load_run", "report", "resume", "run", "score", "size"]
