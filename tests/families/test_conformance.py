"""Every registered model family passes the same checks (the axis's conformance test).

A family owns its synthetic specs, its pipeline call, its GGUF names and its size formulas; the
generic machinery trusts it on each. These checks are what that trust rests on, run for every
entry of bench.families.FAMILIES, so a new family is done when it passes them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.families import FAMILIES
from bench.families.base import Family, UnsupportedOption

FAMILY_NAMES = list(FAMILIES)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request: pytest.FixtureRequest) -> Family:
    return FAMILIES[request.param]


_REAL_META: dict[str, dict[str, Any]] = {}


def real_meta(family: Family) -> dict[str, Any]:
    """Meta modules of the family's real-architecture preset, built once per session."""
    if family.name not in _REAL_META:
        _REAL_META[family.name] = family.meta_components(family.preset(family.real_preset))
    return _REAL_META[family.name]


def _parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())  # a tied tensor counts once


def test_declares_what_the_harness_asks(family: Family) -> None:
    import diffusers

    assert FAMILIES[family.name] is family
    assert family.output in ("image", "video")
    assert family.side_multiple > 0
    assert {family.default_preset, family.real_preset} <= set(family.presets)
    assert hasattr(diffusers, family.pipeline_class)
    assert hasattr(diffusers, family.denoiser_class)
    assert family.published_parameters, "the real architecture must cite published counts"
    assert family.denoiser in family.published_parameters


@pytest.mark.parametrize("preset_kind", ["default", "real"])
def test_every_preset_builds_on_the_meta_device(family: Family, preset_kind: str) -> None:
    import diffusers

    preset = family.default_preset if preset_kind == "default" else family.real_preset
    modules = (
        real_meta(family)
        if preset_kind == "real"
        else family.meta_components(family.preset(preset))
    )
    assert type(modules[family.denoiser]).__name__ == family.denoiser_class
    for name, module in modules.items():
        assert all(p.device.type == "meta" for p in module.parameters()), name
    # the components are what the pipeline class is built from
    accepted = inspect.signature(getattr(diffusers, family.pipeline_class).__init__).parameters
    assert set(modules) <= set(accepted)


def test_real_architecture_matches_published_parameter_counts(family: Family) -> None:
    modules = real_meta(family)
    for component, published in family.published_parameters.items():
        count = _parameters(modules[component])
        assert published.matches(count), f"{component}: {count:,} vs {published.source}"


def test_cache_folders_are_per_preset_and_seed(family: Family) -> None:
    from bench.families.synthetic import synthetic_dir

    a = synthetic_dir(family.default_preset, 0, family.name)
    assert a == synthetic_dir(family.default_preset, 0, family)  # by name or by entry
    assert a != synthetic_dir(family.default_preset, 1, family.name)
    assert a != synthetic_dir(family.real_preset, 0, family.name)
    assert a.name.startswith(f"{family.cache_stem(family.default_preset)}-seed0-")


def test_gguf_names_round_trip_on_the_real_architecture(family: Family) -> None:
    names = family.gguf
    keys = list(real_meta(family)[family.denoiser].state_dict())
    assert names.is_diffusers(keys) and not names.is_original(keys)
    assert names.scheme(keys) == "diffusers"
    groups = names.groups(keys)
    covered = [d for g in groups for d in g.diffusers]
    assert sorted(covered) == sorted(keys), "every tensor in exactly one group"
    originals = [g.original for g in groups]
    assert len(set(originals)) == len(originals)
    if names.original_scheme != "diffusers":
        assert names.is_original(originals) and names.scheme(originals) == names.original_scheme
        assert names.groups(originals) == groups  # the same groups from either side
    for g in groups:
        for d in g.diffusers:
            assert names.original_name(d) == g.original, d
    assert all(len(n.encode()) <= 127 for n in originals)  # GGUF's name limit


def test_gguf_type_recipe_quantizes_only_block_weights(family: Family) -> None:
    from gguf import GGMLQuantizationType as T

    from bench.gguf.plan import choose_tensor_type
    from bench.gguf.qtypes import file_quant_type

    ft = file_quant_type("Q8_0")
    denoiser = real_meta(family)[family.denoiser]
    quantized = 0
    for name, p in denoiser.named_parameters():
        qtype = choose_tensor_type(name, tuple(p.shape), "BF16", ft, family.gguf)
        if qtype not in (T.F32, T.F16, T.BF16):
            quantized += p.numel()
            assert name.startswith(family.gguf.block_prefixes), name
            assert not any(m in name for m in family.gguf.keep_precision_markers), name
    assert quantized > 0.9 * _parameters(denoiser)  # the blocks are almost all of the weights


def test_size_formulas_give_every_phase_working_memory(family: Family) -> None:
    from bench.families.sizing import pipeline_components
    from bench.sizing.predict import parse_offload, predict
    from bench.sizing.terms import Scenario

    spec = family.preset(family.real_preset)
    pipe = pipeline_components(
        real_meta(family), family.pipeline_class, family.title, spec.dtype, family=family.name
    )
    assert set(pipe.offload_order) == set(pipe.components)
    side = family.side_multiple * 32
    small = predict(pipe, Scenario(parse_offload("model"), side, side, 1, 128))
    big = predict(pipe, Scenario(parse_offload("model"), 2 * side, 2 * side, 1, 128))
    for phase in small.phases:
        work = [t for t in phase.terms if t.kind == "activations"]
        assert len(work) == 1 and work[0].bytes > 0 and work[0].explanation, phase.name
    grew = {p.name: p for p in big.phases}
    for phase in small.phases:
        if phase.name == family.denoiser:  # more pixels, more tokens
            assert grew[phase.name].bytes > phase.bytes


def test_refuses_options_it_does_not_take(family: Family) -> None:
    with pytest.raises(UnsupportedOption, match="not_an_option"):
        family.check_options({"not_an_option": 1})
    family.check_options({k: None for k in family.generation_options})


@pytest.mark.slow
def test_tiny_gguf_file_declares_the_architecture_and_loads(
    family: Family, bench_cache: Path, tmp_path: Path
) -> None:
    import diffusers
    import torch
    from diffusers import GGUFQuantizationConfig

    from bench.families.gguf import inspect_gguf, quantize_checkpoint
    from bench.families.synthetic import ensure_synthetic_pipeline

    base = ensure_synthetic_pipeline(family.default_preset, 0, family.name)
    out = tmp_path / "denoiser-Q8_0.gguf"
    quantize_checkpoint(base / family.denoiser, out, "Q8_0", family=family.name)
    info = inspect_gguf(out)
    assert info.metadata["general.architecture"] == family.gguf.architecture
    cls = getattr(diffusers, family.denoiser_class)
    model = cls.from_single_file(
        str(out),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(base),
        subfolder=family.denoiser,
    )
    reference = cls.from_pretrained(base, subfolder=family.denoiser)
    assert set(model.state_dict()) == set(reference.state_dict())


@pytest.mark.slow
def test_generate_returns_images_of_the_asked_size(family: Family, bench_cache: Path) -> None:
    import diffusers
    import torch
    from PIL import Image

    from bench.families.synthetic import ensure_synthetic_pipeline

    folder = ensure_synthetic_pipeline(family.default_preset, 0, family.name)
    pipe = getattr(diffusers, family.pipeline_class).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    steps_seen: list[int] = []

    def on_step_end(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        steps_seen.append(step)
        return kwargs

    side = family.side_multiple * 4
    frames = family.generate(
        pipe,
        "a cat",
        height=side,
        width=side + family.side_multiple,
        steps=2,
        guidance=3.5,
        max_sequence_length=16,
        generator=torch.Generator("cpu").manual_seed(0),
        callback_on_step_end=on_step_end,
        options={"num_frames": 5} if family.output == "video" else None,  # 81 by default: slow
    )
    assert isinstance(frames, list) and frames
    assert len(frames) == (5 if family.output == "video" else 1)
    for frame in frames:
        assert isinstance(frame, Image.Image)
        assert frame.size == (side + family.side_multiple, side)
        assert np.asarray(frame).std() > 0  # not a blank image
    assert steps_seen == [0, 1]
