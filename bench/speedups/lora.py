"""LoRA adapters on the denoiser, made offline: N adapters of random weights on the modules
whose names end with `targets` (diffusers' attention projections by default), loaded with
`pipe.load_lora_weights(state_dict, adapter_name=...)`, combined with `set_adapters` and,
when `fused`, merged with `fuse_lora`. diffusers loads LoRA through peft: without it, or on a
layer peft cannot wrap, the cell fails with diffusers' own message. Sized (`bench size
--speedup lora`) from the denoiser's target layers (bench.blocks.denoisers).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from bench.blocks import denoisers
from bench.config_base import float_range, int_range, unique
from bench.sizing.components import DTYPE_BYTES
from bench.sizing.terms import Term
from bench.speedups.base import ApplyContext, Probe, SizeContext, Speedup, SpeedupConfig

DEFAULT_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class LoraSpeedupConfig(SpeedupConfig):
    kind: Literal["lora"]
    adapters: Annotated[int, int_range(1, 16)] = 1
    rank: Annotated[int, int_range(1, 512)] = 16
    scale: Annotated[float, float_range(0.0, 4.0)] = 1.0
    fused: bool = False
    targets: Annotated[
        list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", max_length=64)]],
        Field(min_length=1, max_length=32),
        AfterValidator(unique),
    ] = Field(default_factory=lambda: list(DEFAULT_TARGETS))
    seed: Annotated[int, int_range(0, 2**31 - 1)] = 0


def random_adapter(denoiser: Any, prefix: str, spec: Any, index: int) -> dict[str, Any]:
    """A LoRA state dict in diffusers' format (`<prefix>.<module>.lora_A/B.weight`) with small
    random weights on every target module; seeded, so each cell of a run gets the same."""
    import torch  # deferred: loads torch

    generator = torch.Generator("cpu").manual_seed(spec.seed + index)
    weights: dict[str, Any] = {}
    for name, module in denoiser.named_modules():
        if not denoisers.is_lora_target(name, spec.targets):
            continue
        inputs, outputs = (
            getattr(module, "in_features", None),
            getattr(module, "out_features", None),
        )
        if inputs is None or outputs is None:
            continue
        down = torch.randn(spec.rank, inputs, generator=generator) / inputs**0.5
        up = torch.randn(outputs, spec.rank, generator=generator) * 0.01
        weights[f"{prefix}.{name}.lora_A.weight"] = down.to(torch.bfloat16)
        weights[f"{prefix}.{name}.lora_B.weight"] = up.to(torch.bfloat16)
    return weights


class LoraSpeedup(Speedup):
    kind = "lora"
    config_model = LoraSpeedupConfig
    description = "N LoRA adapters of random weights on the denoiser, fused or not"

    def label(self, spec: Any) -> str:
        fused = ", fused" if spec.fused else ""
        return f"lora({spec.adapters}x rank {spec.rank}{fused})"

    def apply(self, pipe: Any, spec: Any, context: ApplyContext) -> Probe:
        prefix = getattr(pipe, "transformer_name", "transformer")
        names = [f"bench_{i}" for i in range(spec.adapters)]
        modules = 0
        for index, name in enumerate(names):
            state = random_adapter(context.denoiser, prefix, spec, index)
            modules = len(state) // 2
            pipe.load_lora_weights(state, adapter_name=name)
        pipe.set_adapters(names, adapter_weights=[spec.scale] * len(names))
        if spec.fused:
            pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
        return lambda: {"lora": {"adapters": len(names), "modules": modules}}

    def size_terms(self, spec: Any, context: SizeContext) -> list[Term]:
        """Adapters stay with the denoiser's weights (fused too: `fuse_lora` keeps them until
        `unload_lora_weights`), at its dtype, on the device as much as its weights are."""
        name = context.family.denoiser
        denoiser = context.pipe.components[name]
        resident = sum(
            t.bytes for t in context.terms if t.kind == "weights" and t.component == name
        )
        if not resident:
            return []
        layers = len(denoisers.lora_targets(denoiser, spec.targets))
        params = spec.adapters * denoisers.lora_parameters(denoiser, spec.targets, spec.rank)
        full = params * DTYPE_BYTES[denoiser.dtype]
        share = "" if resident >= denoiser.bytes else f", the {resident / denoiser.bytes:.0%} on it"
        fused = ", fused (kept)" if spec.fused else ""
        why = (
            f"{spec.adapters} adapter(s) × rank {spec.rank} × (in + out) on {layers} layers "
            f"({', '.join(spec.targets)}) at {denoiser.dtype}{fused}{share}"
        )
        return [Term("LoRA adapters", full * resident // denoiser.bytes, why, "weights", name)]
