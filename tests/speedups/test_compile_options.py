"""The compile entry's options that need no compilation to check: dynamo's
`capture_dynamic_output_shape_ops` for bitsandbytes with `fullgraph` (and only there), and the
first call at a new resolution, measured through a stand-in for the runner's call at another size
(bench.runner.cell_phases._warm_call). The real compilation of both, through the runner's own
call, is in tests/speedups/test_conformance.py (tiny FLUX)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch._dynamo import config as dynamo_config

from bench.speedups import parse_speedup, speedup_for
from bench.speedups.base import ApplyContext


class _Denoiser:
    """Stands for the transformer: records how it was asked to compile."""

    def __init__(self) -> None:
        self.options: dict[str, Any] | None = None

    def compile_repeated_blocks(self, **options: Any) -> None:
        self.options = options


@pytest.mark.parametrize(
    ("variant_kind", "fullgraph", "captured"),
    [
        ("bitsandbytes", True, True),
        ("bitsandbytes", False, False),
        ("gguf", True, False),
        ("full", True, False),
    ],
)
def test_capture_dynamic_output_shape_ops_only_for_bitsandbytes_fullgraph(
    variant_kind: str, fullgraph: bool, captured: bool
) -> None:
    spec = parse_speedup({"name": "c", "kind": "compile", "fullgraph": fullgraph})
    denoiser = _Denoiser()
    with dynamo_config.patch(capture_dynamic_output_shape_ops=False):  # restored after
        probe = speedup_for(spec).apply(None, spec, ApplyContext(denoiser, 2, "cpu", variant_kind))
        assert dynamo_config.capture_dynamic_output_shape_ops is captured
        recorded = probe()["compile"]
    assert denoiser.options is not None and denoiser.options["fullgraph"] is fullgraph
    assert recorded.get("capture_dynamic_output_shape_ops", False) is captured


def test_new_resolution_is_one_call_at_that_size_after_the_warmup() -> None:
    spec = parse_speedup({"name": "c", "kind": "compile", "new_resolution": [96, 48]})
    calls: list[tuple[int, int]] = []
    code = object()  # a code object's key in dynamo's guard failures, removed after

    def run_at(size: tuple[int, int]) -> float:
        calls.append(size)
        # What a recompile does to dynamo's counters, without compiling anything.
        torch._dynamo.utils.guard_failures[code].append("size mismatch")
        return 1.5

    entry = speedup_for(spec)
    assert "then 96x48" in entry.label(spec)
    try:
        measured = entry.after_warmup(spec, run_at)["compile"]["new_resolution"]
    finally:
        torch._dynamo.utils.guard_failures.pop(code, None)
    assert calls == [(96, 48)]
    assert measured["height"] == 96 and measured["width"] == 48
    assert measured["first_call_s"] == 1.5 and measured["recompiles"] == 1
    unset = parse_speedup({"name": "c", "kind": "compile"})
    assert entry.after_warmup(unset, run_at) == {} and len(calls) == 1
