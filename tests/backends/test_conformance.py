"""Every registered backend through the same checks (the backends axis's conformance test).

The suite iterates over `bench.backends.BACKENDS`, so a backend registered there is checked
here without touching this file. A backend's size presets are its examples: each must be a
valid variant of its config model once given a name.

The slow check loads each backend's first preset on the tiny pipeline on this machine and
generates one image: it must either differ from full precision by a small non-zero amount or
fail with an exception raised inside the library (not by the harness), as a cell would record.
"""

from __future__ import annotations

import importlib.metadata
import typing
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.backends import BACKENDS, parse_variant, variant_label
from bench.backends.base import Backend, Prepared
from bench.config import validate_config
from bench.errors import ConfigError
from tests.backends.loaded import generate, raised_inside_bench
from tests.runner.sample_config import BASE_CONFIG

KINDS = list(BACKENDS)


def presets(backend: Backend) -> list[dict[str, Any]]:
    """The backend's size presets, each named, as variant specs."""
    return [{"name": f"{backend.kind}-{i}", **p} for i, p in enumerate(backend.size_presets())]


def example(backend: Backend) -> Any:
    return backend.config_model.model_validate(presets(backend)[0])


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


# --- runtime modules --------------------------------------------------------------------------


def test_every_backend_names_modules_this_install_has(backend: Backend) -> None:
    """`.[backends]` is installed here: every module a preset needs imports, but mslk, which no
    CPU machine installs (torchao's int4 packing needs it on every device)."""
    for spec in presets(backend):
        variant = backend.config_model.model_validate(spec)
        needed = backend.runtime_modules(variant)
        for module, distribution in needed.items():
            if module != "mslk":
                assert importlib.metadata.distribution(distribution), module
        if "mslk" not in needed:
            backend.check_runtime(variant)  # raises nothing


def test_a_missing_module_is_named_in_one_line_before_loading() -> None:
    from bench.backends.base import MissingPackages

    backend = BACKENDS["torchao"]
    int4 = parse_variant({"name": "ao", "kind": "torchao", "scheme": "int4wo"})
    assert backend.runtime_modules(int4) == {"torchao": "torchao", "mslk": "mslk-cuda"}
    with pytest.raises(MissingPackages) as caught:
        backend.check_runtime(int4)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "torchao int4wo-g128 needs mslk (distribution mslk-cuda), not installed in this "
        "environment: pip install mslk-cuda"
    )
    int8 = parse_variant({"name": "ao", "kind": "torchao", "scheme": "int8wo"})
    assert "mslk" not in backend.runtime_modules(int8)


# --- registry and config model ----------------------------------------------------------------


def test_registry_keys_are_the_kinds() -> None:
    assert KINDS, "no backend registered"
    for kind, backend in BACKENDS.items():
        assert backend.kind == kind
    assert sum(not b.quantized for b in BACKENDS.values()) == 1  # one reference


def test_kind_is_a_literal_of_the_backend_kind(backend: Backend) -> None:
    annotation = backend.config_model.model_fields["kind"].annotation
    assert typing.get_origin(annotation) is typing.Literal
    assert typing.get_args(annotation) == (backend.kind,)


def test_has_presets_that_validate(backend: Backend) -> None:
    specs = presets(backend)
    assert specs, f"{backend.kind}: size_presets() gives no example"
    for spec in specs:
        model = backend.config_model.model_validate(spec)
        assert model.kind == backend.kind
        assert parse_variant(model.model_dump(mode="json")) == model  # round trip


def test_unknown_key_is_refused_by_name(backend: Backend) -> None:
    spec = {**presets(backend)[0], "not_a_setting": 1}
    with pytest.raises(ValueError, match="not_a_setting"):
        backend.config_model.model_validate(spec)


def test_another_kind_is_refused(backend: Backend) -> None:
    spec = {**presets(backend)[0], "kind": f"{backend.kind}-other"}
    with pytest.raises(ValueError, match="kind"):
        backend.config_model.model_validate(spec)


def test_a_config_accepts_the_preset_beside_full_precision(backend: Backend) -> None:
    spec = presets(backend)[0]
    data = {**BASE_CONFIG, "variants": [BASE_CONFIG["variants"][0], spec]}
    config = validate_config(data, "c.yaml")
    assert config.variants[-1].kind == backend.kind


def test_a_misspelt_key_in_a_config_names_it(backend: Backend) -> None:
    spec = {**presets(backend)[0], "scheem": "x"}
    data = {**BASE_CONFIG, "variants": [BASE_CONFIG["variants"][0], spec]}
    with pytest.raises(ConfigError, match="scheem"):
        validate_config(data, "c.yaml")


# --- labels, bits, packages ------------------------------------------------------------------


def test_label_and_scheme(backend: Backend) -> None:
    for spec in presets(backend):
        model = backend.config_model.model_validate(spec)
        label, scheme = backend.label(model), backend.scheme(model)
        assert isinstance(label, str) and label.strip()
        assert isinstance(scheme, str) and scheme.strip()
        assert variant_label(model.model_dump(mode="json")) == label
    assert backend.summary.strip()


def test_bits_per_weight_are_sane(backend: Backend) -> None:
    for spec in presets(backend):
        model = backend.config_model.model_validate(spec)
        bits = backend.bits_per_weight(model)
        if bits is None:
            continue
        assert 1.0 <= bits <= 32.0
        if not backend.quantized:
            assert bits >= 16.0


def test_quantized_components(backend: Backend) -> None:
    model = example(backend)
    components = backend.quantized_components(model)
    assert bool(components) == backend.quantized
    assert all(isinstance(c, str) and c for c in components)


def test_packages_are_installed_and_importable(backend: Backend) -> None:
    from bench.environment import PACKAGES, _origin

    for package in backend.packages:
        assert importlib.metadata.version(package)
        assert _origin(package) is not None, f"{package}: no import name found"
        assert package in PACKAGES  # recorded in every manifest


# --- preparing, sizing, loading --------------------------------------------------------------


def test_prepare_returns_prepared(backend: Backend, tiny_pipeline: Path, tmp_path: Path) -> None:
    prepared = backend.prepare(example(backend), str(tiny_pipeline), tmp_path)
    assert isinstance(prepared, Prepared)
    assert all(isinstance(v, str) for v in prepared.artifacts.values())


def test_sizes_every_preset(backend: Backend) -> None:
    from bench.families.sizing import full_variant
    from bench.sizing.sources import builtin_base

    base = builtin_base("flux-dev")
    full = full_variant(base, "bfloat16").pipe.bytes
    for spec in presets(backend):
        sized = backend.size_variant(base, spec, None)
        assert sized.kind == backend.kind
        assert sized.pipe.bytes > 0
        if backend.quantized:
            assert sized.pipe.bytes < full  # quantizing FLUX.1-dev saves bytes


@pytest.fixture(scope="module")
def reference_images(tiny_pipeline: Path) -> dict[str, torch.Tensor]:
    """Full-precision images by dtype, made on first use: a variant is compared with full
    precision at its own `pipeline_dtype`, so PSNR measures its quantization and not a dtype
    change (bf16 against fp32 alone gives about 16 dB on the tiny random pipeline)."""
    return {}


def reference(tiny_pipeline: Path, images: dict[str, torch.Tensor], dtype: str) -> torch.Tensor:
    from bench.backends import load_pipeline
    from bench.backends.full import FullVariant

    if dtype not in images:
        full = FullVariant(name="ref", kind="full", dtype=dtype)  # type: ignore[arg-type]
        images[dtype] = generate(load_pipeline(str(tiny_pipeline), full))
    return images[dtype]


@pytest.mark.slow
def test_tiny_load_runs_close_to_full_precision_or_fails_in_the_library(
    backend: Backend,
    tiny_pipeline: Path,
    reference_images: dict[str, torch.Tensor],
    tmp_path: Path,
) -> None:
    from bench.metrics.fidelity import psnr

    model = example(backend)
    prepared = backend.prepare(model, str(tiny_pipeline), tmp_path)
    assert prepared.unavailable is None
    try:
        pipe = backend.load_pipeline(str(tiny_pipeline), model, prepared.artifacts, None)
        image = generate(pipe.to("cpu"))
    except Exception as exc:  # the measurement: whatever the library raises
        assert not raised_inside_bench(exc), f"the harness refused, not the library: {exc!r}"
        assert str(exc).strip(), "a failure without a message"
        return
    score = psnr(image, reference(tiny_pipeline, reference_images, model.pipeline_dtype))
    if not backend.quantized:
        assert score.identical  # the reference itself
        return
    assert not score.identical and score.value is not None
    assert score.value > 20.0, f"{backend.label(model)}: PSNR {score.value:.1f} dB"
