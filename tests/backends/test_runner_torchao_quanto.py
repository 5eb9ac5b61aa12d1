"""torchao and quanto variants through the real runner: one process per cell.

A scheme this machine cannot run is a failed cell, phase `load`, carrying the library's own
exception type and message; or, where the library refuses for want of a module (torchao's int4
packing without mslk), `MissingPackages` naming that module, raised before loading. One that
runs records
weights that `bench size` predicts exactly (bytes; quanto's parameter count differs by its two
scalar buffers per converted layer, charged to the weight's bytes by the layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.results import cell_records, read_manifest, read_records
from bench.sizing.sources import cell_variant, run_base
from tests.backends.runner_run import TORCHAO_QUANTO

pytestmark = pytest.mark.slow

VARIANTS = TORCHAO_QUANTO  # read from the shared run (tests/backends/conftest.py)


def library_verdict(variant: dict[str, Any]) -> BaseException | None:
    """What torchao says when it quantizes a Linear with this scheme here."""
    if variant["kind"] != "torchao":
        return None
    from torchao.quantization import quantize_

    from bench.backends import parse_variant
    from bench.backends.torchao import torchao_config

    linear = torch.nn.Linear(256, 256, dtype=torch.bfloat16)
    try:
        quantize_(linear, torchao_config(parse_variant(variant)))
    except Exception as exc:  # the library's refusal, whatever its type
        return exc
    return None


@pytest.mark.parametrize("variant", VARIANTS, ids=[v["name"] for v in VARIANTS])
def test_each_cell_is_the_libraries_verdict(backends_run: Path, variant: dict[str, Any]) -> None:
    cell = cell_records(read_records(backends_run))[f"{variant['name']}__none__64x64"]
    verdict = library_verdict(variant)
    if verdict is None:
        assert cell["status"] == "ok", cell["error"]
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
