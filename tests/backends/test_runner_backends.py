"""bitsandbytes and layerwise variants through the real runner: one process per cell.

A variant the libraries refuse here is a failed cell carrying the library's own exception type
and message (phase `load`); one that runs records weights that `bench size` predicts exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.results import cell_records, read_manifest, read_records
from bench.runner.executor import run_config
from bench.size.sources import cell_variant, run_base
from tests.runner.sample_config import BASE_CONFIG

pytestmark = pytest.mark.slow

VARIANTS: list[dict[str, Any]] = [
    {"name": "full", "kind": "full", "dtype": "float32"},
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
]


@pytest.fixture(scope="module")
def backends_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
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


def library_verdict(variant: dict[str, Any]) -> BaseException | None:
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


@pytest.mark.parametrize("variant", VARIANTS, ids=[v["name"] for v in VARIANTS])
def test_each_cell_is_the_libraries_verdict(backends_run: Path, variant: dict[str, Any]) -> None:
    cell = cell_records(read_records(backends_run))[f"{variant['name']}__none__64x64"]
    verdict = library_verdict(variant) if variant["kind"] == "bitsandbytes" else None
    if verdict is None:
        assert cell["status"] == "ok", cell["error"]
        assert cell["error"] is None
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
        assert (component.bytes, component.parameters) == (
            weights["bytes"],
            weights["parameters"],
        ), name
