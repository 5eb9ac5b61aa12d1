"""bitsandbytes and layerwise variants through the real runner: one process per cell.

A variant the libraries refuse here is a failed cell carrying the library's own exception type
and message (phase `load`); one that runs records weights that `bench size` predicts exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.results import cell_records, read_manifest, read_records
from bench.sizing.sources import cell_variant, run_base
from tests.backends.runner_run import BNB_LAYERWISE

pytestmark = pytest.mark.slow

VARIANTS = BNB_LAYERWISE  # read from the shared run (tests/backends/conftest.py)


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
