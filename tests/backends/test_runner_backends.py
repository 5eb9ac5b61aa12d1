"""bitsandbytes, layerwise, torchao and quanto variants through the real runner: one run of the
tiny pipeline with every variant (one prompt, two steps, no offload; each cell is a fresh
process whatever run it is in, so one run records what one per backend would, without their
set-ups and full-precision cells; one file, so two test workers never make it twice).

A variant the libraries refuse here is a failed cell carrying the library's own exception type
and message (phase `load`); or, where the library refuses for want of a module (torchao's int4
packing without mslk), `MissingPackages` naming that module, raised before loading. One that
runs records weights that `bench size` predicts exactly (bytes; quanto's parameter count differs
by its two scalar buffers per converted layer, charged to the weight's bytes by the layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from bench.results import cell_records, read_manifest, read_records
from bench.sizing.sources import cell_variant, run_base
from tests.runner.sample_config import BASE_CONFIG

pytestmark = pytest.mark.slow

FULL: dict[str, Any] = {"name": "full", "kind": "full", "dtype": "float32"}
QUANTO_BOTH = ["transformer", "text_encoder_2"]
VARIANTS: list[dict[str, Any]] = [
    FULL,
    {"name": "nf4", "kind": "bitsandbytes", "scheme": "nf4", "dtype": "float32"},
    {
        "name": "int8-te",
        "kind": "bitsandbytes",
        "scheme": "int8",
        "dtype": "float32",
        "components": ["text_encoder", "text_encoder_2"],
    },
    {
        "name": "nf4dq-te",
        "kind": "bitsandbytes",
        "scheme": "nf4",
        "double_quant": True,
        "dtype": "float32",
        "components": ["text_encoder_2"],
    },
    {"name": "fp8", "kind": "layerwise", "compute_dtype": "float32"},
    {"name": "ao-int8", "kind": "torchao", "scheme": "int8wo", "dtype": "float32"},
    # transformer only: with T5 listed too, which library fails first (and so the recorded
    # error) depends on the order diffusers loads components in, which varies with
    # PYTHONHASHSEED (docs/backends.md)
    {"name": "ao-int4", "kind": "torchao", "scheme": "int4wo"},
    {
        "name": "q-int4",
        "kind": "quanto",
        "scheme": "int4",
        "dtype": "bfloat16",
        "components": QUANTO_BOTH,
    },
]


@pytest.fixture(scope="module")
def backends_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every variant above on the tiny pipeline, one cell each (read only: no test writes)."""
    from bench.runner.executor import run_config

    folder = tmp_path_factory.mktemp("backends-run")
    config = {
        **BASE_CONFIG,
        "variants": VARIANTS,
        "prompts": BASE_CONFIG["prompts"][:1],
        "steps": 2,
        "warmup": 0,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_config(path, folder / "results")


def bitsandbytes_verdict(variant: dict[str, Any]) -> BaseException | None:
    """What the quantizer of each listed component's library says about this machine."""
    from bench.backends import parse_variant

    spec = parse_variant(variant)
    if "transformer" not in spec.components:
        return None  # transformers' bitsandbytes quantizers accept a CPU
    from diffusers import BitsAndBytesConfig
    from diffusers.quantizers.bitsandbytes import (
        BnB4BitDiffusersQuantizer,
        BnB8BitDiffusersQuantizer,
    )

    if spec.scheme == "int8":
        quantizer: Any = BnB8BitDiffusersQuantizer(BitsAndBytesConfig(load_in_8bit=True))
    else:
        quantizer = BnB4BitDiffusersQuantizer(BitsAndBytesConfig(load_in_4bit=True))
    try:
        quantizer.validate_environment()
    except Exception as exc:  # the library's refusal, whatever its type
        return exc
    return None


def torchao_verdict(variant: dict[str, Any]) -> BaseException | None:
    """What torchao says when it quantizes a Linear with this scheme here."""
    from torchao.quantization import quantize_

    from bench.backends import parse_variant
    from bench.backends.torchao import torchao_config

    linear = torch.nn.Linear(256, 256, dtype=torch.bfloat16)
    try:
        quantize_(linear, torchao_config(parse_variant(variant)))
    except Exception as exc:  # the library's refusal, whatever its type
        return exc
    return None


def library_verdict(variant: dict[str, Any]) -> BaseException | None:
    """The library's refusal of this variant here (layerwise and quanto: none to ask)."""
    if variant["kind"] == "bitsandbytes":
        return bitsandbytes_verdict(variant)
    if variant["kind"] == "torchao":
        return torchao_verdict(variant)
    return None


@pytest.mark.parametrize("variant", VARIANTS, ids=[v["name"] for v in VARIANTS])
def test_each_cell_is_the_libraries_verdict(backends_run: Path, variant: dict[str, Any]) -> None:
    cell = cell_records(read_records(backends_run))[f"{variant['name']}__none__64x64"]
    verdict = library_verdict(variant)
    if verdict is None:
        assert cell["status"] == "ok", cell["error"]
        assert cell["error"] is None
    elif isinstance(verdict, ImportError):
        # The library's refusal names the module; the cell named it first, before loading.
        (module,) = [m for m in ("mslk",) if m in str(verdict)]
        assert cell["status"] == "failed" and cell["error"]["phase"] == "load"
        assert cell["error"]["type"] == "MissingPackages"
        assert f"needs {module} (distribution " in cell["error"]["message"]
        assert cell["load_s"] is None
    else:
        assert cell["status"] == "failed"
        assert cell["error"] == {
            "type": type(verdict).__name__,
            "message": str(verdict),
            "phase": "load",
        }


@pytest.mark.parametrize("variant", VARIANTS, ids=[v["name"] for v in VARIANTS])
def test_recorded_weights_are_sized_exactly(backends_run: Path, variant: dict[str, Any]) -> None:
    manifest = read_manifest(backends_run)
    cell_id = f"{variant['name']}__none__64x64"
    record = cell_records(read_records(backends_run))[cell_id]
    if record["status"] != "ok":  # refused while loading: nothing was on the host to weigh
        assert record["weights"] == {}
        return
    entry = next(c for c in manifest["cells"] if c["cell_id"] == cell_id)
    sized = cell_variant(run_base(manifest), entry)
    assert sized.kind == variant["kind"]
    for name, weights in record["weights"].items():
        component = sized.pipe.components[name]
        assert component.bytes == weights["bytes"], name
        extra = 0
        if variant["kind"] == "quanto" and name in variant["components"]:
            from bench.backends.quanto import SCALAR_BUFFERS, converted_modules

            modules = run_base(manifest).modules[name]
            extra = SCALAR_BUFFERS * len(converted_modules(modules))
        assert weights["parameters"] == component.parameters + extra, name


def test_manifest_records_the_backend_packages(backends_run: Path) -> None:
    packages = read_manifest(backends_run)["environment"]["packages"]
    assert packages["torchao"] and packages["optimum-quanto"]
