"""diffusers' caches, enabled on the denoiser with `transformer.enable_cache(config)`
(diffusers `optimization/cache`): First Block Cache, TaylorSeer, MagCache, FasterCache and
Pyramid Attention Broadcast, each with the parameters of its diffusers config class.

FasterCache and Pyramid Attention Broadcast decide by the pipeline's current timestep, read
through `pipe.current_timestep` as diffusers' examples do. First Block Cache and MagCache skip
whole denoiser calls after the first block; the probe counts them (a call in which no module of
the last block ran). TaylorSeer, FasterCache and Pyramid Attention Broadcast skip attention or
block computations inside a call, which diffusers does not count: their probe reports none.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from bench.config_base import Strict, float_range, int_range
from bench.speedups.base import ApplyContext, Probe, Speedup, SpeedupConfig

Step = Annotated[int, int_range(0, 10_000)]
Timestep = Annotated[int, int_range(-1, 1_000)]
Skip = Annotated[int, int_range(1, 1_000)]


class FirstBlock(Strict):
    method: Literal["first_block"]
    threshold: Annotated[float, float_range(0.0, 10.0)] = 0.05


class TaylorSeer(Strict):
    method: Literal["taylorseer"]
    cache_interval: Skip = 5
    disable_cache_before_step: Step = 3
    disable_cache_after_step: Step | None = None
    max_order: Annotated[int, int_range(0, 8)] = 1


class Mag(Strict):
    method: Literal["mag"]
    threshold: Annotated[float, float_range(0.0, 10.0)] = 0.06
    max_skip_steps: Skip = 3
    retention_ratio: Annotated[float, float_range(0.0, 1.0)] = 0.2
    mag_ratios: (
        Literal["flux"]
        | Annotated[list[Annotated[float, float_range(0.0, 100.0)]], Field(min_length=2)]
        | None
    ) = Field(
        default=None,
        description="flux: diffusers' FLUX_MAG_RATIOS; a list: calibrated ratios; none with "
        "calibrate: true records them",
    )
    calibrate: bool = False


TimestepRange = Annotated[list[Timestep], Field(min_length=2, max_length=2)]


class Faster(Strict):
    method: Literal["faster"]
    spatial_attention_block_skip_range: Skip = 2
    spatial_attention_timestep_skip_range: TimestepRange = Field(default_factory=lambda: [-1, 681])
    unconditional_batch_skip_range: Skip = 5
    unconditional_batch_timestep_skip_range: TimestepRange = Field(
        default_factory=lambda: [-1, 641]
    )
    attention_weight: Annotated[float, float_range(0.0, 1.0)] = 0.3
    tensor_format: Literal["BCFHW", "BFCHW", "BCHW"] = "BCHW"
    is_guidance_distilled: bool = True


class PyramidAttentionBroadcast(Strict):
    method: Literal["pyramid_attention_broadcast"]
    spatial_attention_block_skip_range: Skip | None = 2
    spatial_attention_timestep_skip_range: TimestepRange = Field(default_factory=lambda: [100, 800])
    cross_attention_block_skip_range: Skip | None = None
    cross_attention_timestep_skip_range: TimestepRange = Field(default_factory=lambda: [100, 800])


Method = Annotated[
    Union[FirstBlock, TaylorSeer, Mag, Faster, PyramidAttentionBroadcast],  # noqa: UP007
    Field(discriminator="method"),
]


class CacheSpeedupConfig(SpeedupConfig):
    kind: Literal["cache"]
    cache: Method


def diffusers_config(spec: Any, pipe: Any, steps: int) -> Any:
    """The diffusers cache config the spec describes."""
    from diffusers import hooks  # deferred: loads diffusers

    method = spec.cache
    settings = method.model_dump(exclude={"method"})
    current = lambda: pipe.current_timestep  # noqa: E731 - diffusers' examples pass this
    if method.method == "first_block":
        return hooks.FirstBlockCacheConfig(**settings)
    if method.method == "taylorseer":
        return hooks.TaylorSeerCacheConfig(**settings)
    if method.method == "mag":
        if settings["mag_ratios"] == "flux":
            from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS  # deferred: loads diffusers

            settings["mag_ratios"] = FLUX_MAG_RATIOS
        return hooks.MagCacheConfig(num_inference_steps=steps, **settings)
    if method.method == "faster":
        weight = settings.pop("attention_weight")
        return hooks.FasterCacheConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()},
            attention_weight_callback=lambda _: weight,
            current_timestep_callback=current,
        )
    return hooks.PyramidAttentionBroadcastConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()},
        current_timestep_callback=current,
    )


#: The methods that skip whole denoiser calls after the first block (what the probe counts).
SKIPS_CALLS = ("first_block", "mag")


def _count_skipped_calls(denoiser: Any) -> Probe:
    """Denoiser calls in which no module of its last repeated block ran: the calls a block
    cache answered from its cache."""
    names = set(getattr(denoiser, "_repeated_blocks", ()) or ())
    blocks = [m for m in denoiser.modules() if type(m).__name__ in names]
    leaves = [m for m in blocks[-1].modules() if not list(m.children())] if blocks else []
    state = {"calls": 0, "skipped": 0, "ran": False}

    def ran(*_: Any) -> None:
        state["ran"] = True

    def before(*_: Any) -> None:
        state["ran"] = False

    def after(*_: Any) -> None:
        state["calls"] += 1
        state["skipped"] += not state["ran"]

    for leaf in leaves:
        leaf.register_forward_hook(ran)
    denoiser.register_forward_pre_hook(before)
    denoiser.register_forward_hook(after)
    start = dict(state)

    def probe() -> dict[str, Any]:
        return {
            "cache": {
                "denoiser_calls": state["calls"] - start["calls"],
                "skipped_calls": state["skipped"] - start["skipped"] if leaves else None,
            }
        }

    return probe


class CacheSpeedup(Speedup):
    kind = "cache"
    config_model = CacheSpeedupConfig
    description = "a diffusers cache on the denoiser (transformer.enable_cache)"

    def label(self, spec: Any) -> str:
        settings = spec.cache.model_dump(exclude={"method"}, exclude_defaults=True)
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        return f"cache({spec.cache.method}{', ' + shown if shown else ''})"

    def apply(self, pipe: Any, spec: Any, context: ApplyContext) -> Probe:
        context.denoiser.enable_cache(diffusers_config(spec, pipe, context.steps))
        if spec.cache.method in SKIPS_CALLS:
            return _count_skipped_calls(context.denoiser)
        return lambda: {"cache": {"skipped_calls": None}}
