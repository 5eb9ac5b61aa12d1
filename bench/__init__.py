"""Quantization benchmarking harness for diffusion pipelines.

The public API (bench.api): `run`, `resume`, `load_run`, `score`, `report`, `compare`, `size`.
Importing bench is cheap: each function imports its stage when called.

Four of these names are also stage modules (bench/score.py, bench/report/, bench/compare/,
bench/size/). Python sets a package attribute to a submodule when it is first imported, which
would turn `bench.score` from the function into the module half-way through a session; this
package's module type ignores exactly those assignments. The stage modules stay importable
as always (`from bench.report.build import build_report`); only dotted access through the
package, `bench.report.build`, reaches the function instead.
"""

from __future__ import annotations

import sys
import types

from bench.api import compare, load_run, report, resume, run, score, size

__version__ = "0.1.0"
__all__ = ["compare", "load_run", "report", "resume", "run", "score", "size"]
_API_NAMES = frozenset(__all__)


class _PublicModule(types.ModuleType):
    """The `bench` package: its API functions are not replaced by same-named submodules."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _API_NAMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicModule
