"""`bench size --speedup`: what a speed-up keeps on the device, against what diffusers and peft
really hold on a tiny synthetic pipeline (CPU): the LoRA parameters peft adds, and the tensors a
cache's hooks keep in their state while the pipeline runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.errors import ArgumentError
from bench.families.sizing import folder_base, full_variant
from bench.families.synthetic import ensure_synthetic_pipeline
from bench.offload import parse_offload
from bench.sizing.options import parse_speedup_option, size_options
from bench.sizing.predict import predict
from bench.sizing.terms import Scenario
from bench.speedups.base import ApplyContext
from bench.speedups.lora import LoraSpeedup


def _predicted(pipeline: Path, spec: Any, term: str, **settings: Any) -> int:
    """The term's bytes for the pipeline at float32, no offload."""
    pipe = full_variant(folder_base(pipeline), "float32").pipe
    scenario = Scenario(parse_offload("none"), speedups=(spec,), **settings)
    found = predict(pipe, scenario).term(term)
    assert found is not None, term
    return found.bytes


def _load(pipeline: Path) -> Any:
    import torch
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(pipeline, torch_dtype=torch.float32)


def _state_bytes(denoiser: Any) -> int:
    """Bytes of every tensor the denoiser's stateful hooks hold (each tensor once)."""
    import torch

    seen: dict[int, int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            seen[id(value)] = value.numel() * value.element_size()
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    managers = {}
    for module in denoiser.modules():
        registry = getattr(module, "_diffusers_hook", None)
        for hook in (registry.hooks if registry else {}).values():
            manager = getattr(hook, "state_manager", None)
            if manager is not None:
                managers[id(manager)] = manager
    for manager in managers.values():
        for state in manager._state_cache.values():
            walk(vars(state))
    return sum(seen.values())


def _run_with_cache(pipe: Any, config: Any, steps: int, **call: Any) -> int:
    """Run the cached pipeline; the largest state its hooks held at the end of a step."""
    pipe.transformer.enable_cache(config)
    held: list[int] = []

    def on_step_end(pipeline: Any, step: int, timestep: Any, kwargs: dict) -> dict:
        held.append(_state_bytes(pipeline.transformer))
        return kwargs

    pipe(prompt="a cat", num_inference_steps=steps, callback_on_step_end=on_step_end, **call)
    assert max(held) > 0
    return max(held)


FLUX_CALL = {"height": 64, "width": 64, "max_sequence_length": 32, "guidance_scale": 3.5}
FLUX_SCENARIO = {"height": 64, "width": 64, "max_sequence_length": 32}


def test_lora_adapters_are_the_parameters_peft_adds(tiny_pipeline: Path) -> None:
    import torch

    spec = parse_speedup_option("{kind: lora, adapters: 2, rank: 4, fused: true}")
    pipe = _load(tiny_pipeline)
    LoraSpeedup().apply(pipe, spec, ApplyContext(pipe.transformer, 2, "cpu", "full"))
    added = [p for n, p in pipe.transformer.named_parameters() if "lora_" in n]
    assert added and all(p.dtype == torch.float32 for p in added)
    measured = sum(p.numel() * p.element_size() for p in added)
    assert _predicted(tiny_pipeline, spec, "LoRA adapters", **FLUX_SCENARIO) == measured


def test_first_block_cache_state_is_what_its_hooks_hold(tiny_pipeline: Path) -> None:
    from diffusers.hooks import FirstBlockCacheConfig

    spec = parse_speedup_option("first_block")
    held = _run_with_cache(_load(tiny_pipeline), FirstBlockCacheConfig(threshold=0.05), 3,
                           **FLUX_CALL)  # fmt: skip
    assert held == _predicted(tiny_pipeline, spec, "First Block Cache state", **FLUX_SCENARIO)


def test_taylorseer_factors_are_what_its_hooks_hold(tiny_pipeline: Path) -> None:
    from diffusers.hooks import TaylorSeerCacheConfig

    spec = parse_speedup_option(
        "{kind: cache, cache: {method: taylorseer, cache_interval: 2, disable_cache_before_step: 2,"
        " max_order: 2}}"
    )
    config = TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=2, max_order=2)
    held = _run_with_cache(_load(tiny_pipeline), config, 4, **FLUX_CALL)
    assert held == _predicted(tiny_pipeline, spec, "TaylorSeer factors", **FLUX_SCENARIO)


def test_wan_keeps_a_first_block_cache_state_per_guidance_pass(bench_cache: Path) -> None:
    from diffusers.hooks import FirstBlockCacheConfig

    pipeline = ensure_synthetic_pipeline("tiny", 0, "wan")
    spec = parse_speedup_option("first_block")
    call = {"height": 64, "width": 64, "num_frames": 5, "max_sequence_length": 16}
    held = _run_with_cache(_load(pipeline), FirstBlockCacheConfig(threshold=0.05), 2,
                           guidance_scale=5.0, **call)  # fmt: skip
    scenario = {"height": 64, "width": 64, "num_frames": 5, "max_sequence_length": 16}
    assert held == _predicted(pipeline, spec, "First Block Cache state", **scenario)


def test_a_cache_state_stays_through_the_vae_decode_and_lora_only_where_its_weights_are() -> None:
    result = size_options(
        model="flux-dev", quant=["Q8_0"], offload=["none", "model"],
        speedups=["first_block", "lora"],
    )  # fmt: skip
    for option in result.options:
        phases = {p.name: {t.name for t in p.terms} for p in option.prediction.phases}
        assert "First Block Cache state" in phases["vae"]
        assert "First Block Cache state" not in phases["text_encoder"]
        assert ("LoRA adapters" in phases["vae"]) == (option.offload == "none")
        assert "LoRA adapters" in phases["transformer"]
    assert [s["name"] for s in result.settings["speedups"]] == ["first_block", "lora"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("warp", "expected a speed-up kind"),
        ("{kind: lora, rank: 0}", "rank"),
        ("{kind: teleport}", "teleport"),
    ],
)
def test_a_bad_speedup_names_the_option(text: str, words: str) -> None:
    with pytest.raises(ArgumentError, match="--speedup") as caught:
        parse_speedup_option(text)
    assert words in str(caught.value)
