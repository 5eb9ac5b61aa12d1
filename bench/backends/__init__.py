"""The backends axis: every way a variant's weights can be stored and loaded.

`BACKENDS` maps a variant's `kind` to its backend (bench/backends/base.py says what one owns).
The config's variant union, the worker's loading, the report's quant column, `bench size` and
the manifest's package versions all ask this registry, so adding a backend is one module here
plus its entry below.
"""

from __future__ import annotations

from typing import Any

from bench.backends.base import Backend
from bench.backends.bitsandbytes import BitsAndBytesBackend
from bench.backends.full import FullBackend
from bench.backends.gguf import GGUFBackend
from bench.backends.layerwise import LayerwiseBackend
from bench.backends.quanto import QuantoBackend
from bench.backends.torchao import TorchAoBackend
from bench.config_fields import entry_of

BACKENDS: dict[str, Backend] = {
    backend.kind: backend
    for backend in (
        FullBackend(),
        GGUFBackend(),
        BitsAndBytesBackend(),
        LayerwiseBackend(),
        TorchAoBackend(),
        QuantoBackend(),
    )
}


def backend_for(kind_or_spec: str | dict[str, Any] | Any) -> Backend:
    """The backend of a kind, a recorded spec (a dict) or a variant model."""
    return entry_of(BACKENDS, kind_or_spec, "variant", "backend")


def load_pipeline(
    base: str, variant: Any, artifacts: dict[str, str] | None = None, revision: str | None = None
) -> Any:
    """The whole pipeline on the host, ready for the offload mode, loaded by the variant's
    backend the way diffusers' documentation shows."""
    return backend_for(variant).load_pipeline(base, variant, artifacts or {}, revision)


def parse_variant(spec: dict[str, Any]) -> Any:
    """A recorded variant spec (a manifest's `variant_spec`) as its backend's model."""
    return backend_for(spec).config_model.model_validate(spec)


def _describe(spec: dict[str, Any], what: str) -> str:
    """`label` or `scheme` of a recorded spec; a kind this version does not know (a run from a
    newer harness) is shown by its kind rather than refused."""
    backend = BACKENDS.get(str(spec.get("kind")))
    if backend is None:
        return str(spec.get("kind") or "?")
    try:
        variant = backend.config_model.model_validate(spec)
    except ValueError:
        return str(spec.get("kind"))
    return backend.label(variant) if what == "label" else backend.scheme(variant)


def variant_label(spec: dict[str, Any]) -> str:
    """Backend and scheme of a recorded spec in a table's words ("GGUF Q4_K", "full")."""
    return _describe(spec, "label")


def variant_scheme(spec: dict[str, Any]) -> str:
    """The quantization scheme of a recorded spec ("Q4_K", "int8wo", "bf16")."""
    return _describe(spec, "scheme")


def backend_packages() -> tuple[str, ...]:
    """Distributions every backend names, for the manifest (recorded when installed)."""
    return tuple(dict.fromkeys(p for b in BACKENDS.values() for p in b.packages))


__all__ = [
    "BACKENDS",
    "backend_for",
    "backend_packages",
    "load_pipeline",
    "parse_variant",
    "variant_label",
    "variant_scheme",
]
