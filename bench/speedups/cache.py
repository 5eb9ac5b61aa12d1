"""diffusers' caches, enabled on the denoiser with `transformer.enable_cache(config)`
(diffusers `optimization/cache`): First Block Cache, TaylorSeer, MagCache, FasterCache and
Pyramid Attention Broadcast, each with the parameters of its diffusers config class.

FasterCache and Pyramid Attention Broadcast decide by the pipeline's current timestep, read
through `pipe.current_timestep` as diffusers' examples do. Every method skips computations
through its hooks' `new_forward`: the probe counts, per hook, the calls and the ones that did
not run the module's own forward (`_count_skips`). First Block Cache and MagCache skip whole
denoiser calls after the first block, which their tail block's hook counts (`skipped_calls`);
TaylorSeer, FasterCache and Pyramid Attention Broadcast skip attention or block computations
inside a call (`skipped_calls` null: no whole call is skipped).

`bench size --speedup` adds the state First Block Cache and TaylorSeer keep (their formulas:
bench.blocks.denoisers); MagCache, FasterCache and Pyramid Attention Broadcast are not sized.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import Field

from bench.blocks import denoisers
from bench.config_base import Strict, float_range, int_range
from bench.sizing.components import DTYPE_BYTES
from bench.sizing.terms import Term
from bench.speedups.base import ApplyContext, Probe, SizeContext, Speedup, SpeedupConfig

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


_METHOD_MODELS = (FirstBlock, TaylorSeer, Mag, Faster, PyramidAttentionBroadcast)
Method = Annotated[Union[_METHOD_MODELS], Field(discriminator="method")]  # noqa: UP007
#: The methods' names, as a config's `cache.method` (and `bench size --speedup`) spells them.
CACHE_METHODS: tuple[str, ...] = tuple(
    get_args(model.model_fields["method"].annotation)[0] for model in _METHOD_MODELS
)


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


def _hook_keys(denoiser: Any) -> set[tuple[int, str]]:
    """The diffusers hooks on the denoiser's modules, as (module id, hook name)."""
    keys = set()
    for module in denoiser.modules():
        registry = getattr(module, "_diffusers_hook", None)
        keys |= {(id(module), name) for name in (registry.hooks if registry else ())}
    return keys


def _counting(function: Callable[..., Any], tally: dict[str, int], key: str) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        tally[key] += 1
        return function(*args, **kwargs)

    return counted


def _count_skips(denoiser: Any, before: set[tuple[int, str]]) -> Probe:
    """Count, for every hook the cache registered, the calls it answered and how many of them
    ran the module's own forward: each diffusers cache hook replaces the forward with its
    `new_forward`, which calls `fn_ref.original_forward` only when it computes, so a call that
    did not is a computation the cache skipped (a block, or an attention layer, reused or
    extrapolated). The tail hook of First Block Cache and MagCache (`is_tail`) skips exactly
    when the whole denoiser call after the first block is skipped: its count is `skipped_calls`.
    diffusers keeps no skip count, and its call counters (PAB's and FasterCache's `iteration`,
    MagCache's `step_index`) are reset at the pipeline's end (`maybe_free_model_hooks`), before
    the probe reads: hence counters of our own, two closure calls per hooked module call.
    """
    hooks: list[tuple[str, bool, dict[str, int]]] = []
    for module in denoiser.modules():
        registry = getattr(module, "_diffusers_hook", None)
        for name, hook in (registry.hooks if registry else {}).items():
            ref = getattr(hook, "fn_ref", None)
            if (id(module), name) in before or ref is None or ref.original_forward is None:
                continue
            tally = {"calls": 0, "computed": 0}
            ref.forward = _counting(ref.forward, tally, "calls")
            ref.original_forward = _counting(ref.original_forward, tally, "computed")
            hooks.append((name, bool(getattr(hook, "is_tail", False)), tally))
    calls = {"denoiser": 0}

    def called(*_: Any) -> None:
        calls["denoiser"] += 1

    denoiser.register_forward_hook(called)

    def probe() -> dict[str, Any]:
        by_name: dict[str, dict[str, int]] = {}
        for name, _, tally in hooks:
            total = by_name.setdefault(name, {"calls": 0, "skipped": 0})
            total["calls"] += tally["calls"]
            total["skipped"] += tally["calls"] - tally["computed"]
        tails = [t["calls"] - t["computed"] for _, is_tail, t in hooks if is_tail]
        return {
            "cache": {
                "denoiser_calls": calls["denoiser"],
                "skipped_calls": tails[0] if tails else None,
                "hooks": by_name,
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
        before = _hook_keys(context.denoiser)
        context.denoiser.enable_cache(diffusers_config(spec, pipe, context.steps))
        return _count_skips(context.denoiser, before)

    def size_terms(self, spec: Any, context: SizeContext) -> list[Term]:
        """First Block Cache's and TaylorSeer's state, from the denoiser's first call until the
        pipeline's end (`maybe_free_model_hooks` resets it after the VAE decode), whatever the
        offload mode: plain tensors, not module weights."""
        family, pipe, method = context.family, context.pipe, spec.cache
        sized = method.method in ("first_block", "taylorseer")
        order = pipe.offload_order
        if not sized or order.index(context.running) < order.index(family.denoiser):
            return []
        denoiser = pipe.components[family.denoiser]
        streams = family.denoiser_streams(pipe, context.scenario)
        hidden = denoisers.hidden_size(denoiser)
        where = (
            f"{streams.passes} cache context(s) × {streams.rows} row(s) × "
            f"{streams.image_tokens} image + {streams.text_tokens} text tokens × {hidden}"
        )
        if method.method == "first_block":
            elements = denoisers.first_block_cache_elements(streams, hidden)
            why = f"head output and residual, tail residuals: 3 image + 2 text tensors; {where}"
            nbytes = elements * DTYPE_BYTES[context.compute_dtype]
            return [Term("First Block Cache state", nbytes, why, "cache")]
        modules = denoisers.taylorseer_modules(denoiser)
        elements = denoisers.taylorseer_elements(modules, method.max_order, streams, hidden)
        why = (
            f"{method.max_order + 1} Taylor factors (bfloat16) of {modules} hooked attention "
            f"outputs; {where}"
        )
        nbytes = elements * denoisers.TAYLORSEER_FACTOR_BYTES
        return [Term("TaylorSeer factors", nbytes, why, "cache")]
