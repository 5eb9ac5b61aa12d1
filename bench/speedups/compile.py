"""torch.compile on the denoiser: the whole module (`transformer.compile(...)`) or regional
compilation of its repeated blocks (`transformer.compile_repeated_blocks(...)`, diffusers'
`_repeated_blocks`), with `fullgraph`, `dynamic`, `mode` and the backend as torch takes them.

Compilation is lazy: it happens in the first call, so the warm-up pays it. The probe reports
the compile time torch measured (dynamo's `_compile.compile_inner`, apart from the steady-state
time of the images), the graphs it made, the graph breaks, and the recompiles (one per guard
failure dynamo recorded).

`new_resolution: [height, width]` adds, after the warm-up, one timed call at that size: the
first call at a new resolution, with the compile time and recompiles it causes (dynamo's guards
on the input shapes fail, and with `dynamic` unset it recompiles with dynamic shapes), recorded
as `compile.new_resolution`; the images that follow are at the cell's own size again.

A bitsandbytes variant compiled with `fullgraph` needs dynamo to capture operators whose output
shape depends on the data (bitsandbytes' quantized matmuls), which torch refuses unless
`torch._dynamo.config.capture_dynamic_output_shape_ops` is on (diffusers' bitsandbytes
documentation): the entry turns it on for that combination only, in the cell's own process,
and records `capture_dynamic_output_shape_ops: true`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from bench import limits
from bench.config_base import int_range
from bench.speedups.base import ApplyContext, Probe, RunAt, Speedup, SpeedupConfig

Side = Annotated[int, int_range(limits.MIN_SIDE, limits.MAX_SIDE)]


class CompileSpeedupConfig(SpeedupConfig):
    kind: Literal["compile"]
    scope: Literal["whole", "repeated_blocks"] = Field(
        default="repeated_blocks",
        description="whole: transformer.compile; repeated_blocks: compile_repeated_blocks",
    )
    fullgraph: bool = False
    dynamic: bool | None = None
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = (
        "default"
    )
    backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    new_resolution: Annotated[list[Side], Field(min_length=2, max_length=2)] | None = Field(
        default=None,
        description="[height, width]: after the warm-up, one timed call at this size (the first "
        "call at a new resolution, with the recompiles it causes)",
    )


def _dynamo_state() -> dict[str, float]:
    """Compile seconds so far, graphs, graph breaks and recompiles: dynamo's process counters."""
    from torch._dynamo import utils  # deferred: loads torch

    counters = utils.counters
    return {
        "compile_s": sum(utils.compilation_time_metrics.get("_compile.compile_inner", [])),
        "graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "recompiles": sum(len(reasons) for reasons in utils.guard_failures.values()),
    }


def _since(before: dict[str, float]) -> dict[str, float]:
    """What dynamo's counters (`_dynamo_state`) did since `before`."""
    now = _dynamo_state()
    return {key: now[key] - before[key] for key in now}


class CompileSpeedup(Speedup):
    kind = "compile"
    config_model = CompileSpeedupConfig
    description = "torch.compile of the denoiser, whole or its repeated blocks"

    def label(self, spec: Any) -> str:
        options = [spec.scope, spec.backend]
        if spec.fullgraph:
            options.append("fullgraph")
        if spec.dynamic is not None:
            options.append(f"dynamic={spec.dynamic}")
        if spec.mode != "default":
            options.append(spec.mode)
        if spec.new_resolution is not None:
            height, width = spec.new_resolution
            options.append(f"then {height}x{width}")
        return f"compile({', '.join(options)})"

    def apply(self, pipe: Any, spec: Any, context: ApplyContext) -> Probe:
        options = {
            "fullgraph": spec.fullgraph,
            "dynamic": spec.dynamic,
            "mode": None if spec.mode == "default" else spec.mode,
            "backend": spec.backend,
        }
        captured = spec.fullgraph and context.variant_kind == "bitsandbytes"
        if captured:
            from torch._dynamo import config  # deferred: loads torch

            config.capture_dynamic_output_shape_ops = True
        before = _dynamo_state()
        if spec.scope == "whole":
            context.denoiser.compile(**options)
        else:
            context.denoiser.compile_repeated_blocks(**options)

        def probe() -> dict[str, Any]:
            counted: dict[str, Any] = _since(before)
            if captured:
                counted["capture_dynamic_output_shape_ops"] = True
            return {"compile": counted}

        return probe

    def after_warmup(self, spec: Any, run_at: RunAt) -> dict[str, Any]:
        if spec.new_resolution is None:
            return {}
        height, width = spec.new_resolution
        before = _dynamo_state()
        seconds = run_at((height, width))
        new = {"height": height, "width": width, "first_call_s": seconds, **_since(before)}
        return {"compile": {"new_resolution": new}}
