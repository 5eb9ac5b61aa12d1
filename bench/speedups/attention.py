"""An attention backend, set on the denoiser with `transformer.set_attention_backend(name)`.

The names are diffusers' `AttentionBackendName` values (0.42); diffusers checks that the
backend's package and hardware are there and raises with its own message when not (a flash or
sage backend on a CPU), which is the cell's failure.
"""

from __future__ import annotations

from typing import Any, Literal

from bench.speedups.base import ApplyContext, Probe, Speedup, SpeedupConfig

Backend = Literal[
    "native",
    "_native_cudnn",
    "_native_efficient",
    "_native_flash",
    "_native_math",
    "flex",
    "flash",
    "flash_hub",
    "flash_varlen",
    "flash_varlen_hub",
    "_flash_3",
    "_flash_3_hub",
    "_flash_varlen_3",
    "_flash_3_varlen_hub",
    "sage",
    "sage_hub",
    "sage_varlen",
    "xformers",
]


class AttentionSpeedupConfig(SpeedupConfig):
    kind: Literal["attention"]
    backend: Backend


class AttentionSpeedup(Speedup):
    kind = "attention"
    config_model = AttentionSpeedupConfig
    description = "the denoiser's attention backend (diffusers' attention dispatcher)"

    def label(self, spec: Any) -> str:
        return f"attention({spec.backend})"

    def apply(self, pipe: Any, spec: Any, context: ApplyContext) -> Probe:
        context.denoiser.set_attention_backend(spec.backend)
        return lambda: {}
