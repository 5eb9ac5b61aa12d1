"""torch.compile on the denoiser: the whole module (`transformer.compile(...)`) or regional
compilation of its repeated blocks (`transformer.compile_repeated_blocks(...)`, diffusers'
`_repeated_blocks`), with `fullgraph`, `dynamic`, `mode` and the backend as torch takes them.

Compilation is lazy: it happens in the first call, so the warm-up pays it. The probe reports
the compile time torch measured (dynamo's `_compile.compile_inner`, apart from the steady-state
time of the images), the graphs it made, the graph breaks, and the recompiles (one per guard
failure dynamo recorded).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bench.speedups.base import ApplyContext, Probe, Speedup, SpeedupConfig


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
        return f"compile({', '.join(options)})"

    def apply(self, pipe: Any, spec: Any, context: ApplyContext) -> Probe:
        options = {
            "fullgraph": spec.fullgraph,
            "dynamic": spec.dynamic,
            "mode": None if spec.mode == "default" else spec.mode,
            "backend": spec.backend,
        }
        before = _dynamo_state()
        if spec.scope == "whole":
            context.denoiser.compile(**options)
        else:
            context.denoiser.compile_repeated_blocks(**options)

        def probe() -> dict[str, Any]:
            now = _dynamo_state()
            return {"compile": {key: now[key] - before[key] for key in now}}

        return probe
