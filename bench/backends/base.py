"""What a quantization backend is to the harness: one class per backend, one module each.

The rest of the harness never asks "is this GGUF?": it asks the variant's backend (through
bench.backends.backend_for) for its config model, its label and nominal bits per weight, what
must be prepared before any cell runs, how the pipeline is loaded, its weights term for
`bench size`, and which packages' versions describe it in a manifest. A new backend is one
module defining a subclass and registering it in bench/backends/__init__.py; the conformance
test (tests/backends/test_conformance.py) runs every registered backend through the same checks.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.config_fields import VariantConfig


class MissingPackages(RuntimeError):
    """A variant needs modules this environment cannot import: raised in the cell before
    anything loads, so the record names every one and what installs it, in one line."""


def importable(module: str) -> bool:
    """Whether `module` can be imported here, found without importing it (a dotted name
    imports its parents only)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False


@dataclass
class Prepared:
    """What the parent made or found for a variant before its cells run.

    `artifacts` travels to the cell process (picklable, plain strings): for GGUF the file to
    load. `file_info` goes into the manifest. `unavailable` ({type, message, phase}) turns
    every cell of the variant into an `unavailable` record instead of a process.
    """

    artifacts: dict[str, str] = field(default_factory=dict)
    file_info: dict[str, Any] | None = None
    unavailable: dict[str, str] | None = None


class Backend:
    """Base of every backend. Subclasses set the class attributes and override what differs."""

    #: the `kind:` of a variant in the YAML
    kind: ClassVar[str]
    #: the pydantic model of such a variant (its `kind` a Literal of `kind`)
    config_model: ClassVar[type[VariantConfig]]
    #: distributions whose versions describe this backend in a manifest (compared by
    #: `bench compare` like torch's and diffusers')
    packages: ClassVar[tuple[str, ...]] = ()
    #: False only for the unquantized reference every other variant is paired with
    quantized: ClassVar[bool] = True
    #: one line for docs and `bench inspect`: what this backend is, with its diffusers API
    summary: ClassVar[str] = ""

    # --- labels -------------------------------------------------------------------------
    def scheme(self, variant: Any) -> str:
        """The quantization scheme in a table's words ("Q4_K", "int8 weight-only", "bf16")."""
        raise NotImplementedError

    def label(self, variant: Any) -> str:
        """Backend and scheme, for a table's quant column ("GGUF Q4_K", "torchao int8wo")."""
        return f"{self.kind} {self.scheme(variant)}"

    def bits_per_weight(self, variant: Any) -> float | None:
        """Nominal stored bits per quantized weight, scales included (None: not fixed)."""
        return None

    def quantized_components(self, variant: Any) -> tuple[str, ...]:
        """Pipeline components this variant quantizes (empty for the reference)."""
        return tuple(getattr(variant, "components", ()) or ())

    # --- config -------------------------------------------------------------------------
    def check_model_source(self, variant: Any, source: str) -> None:
        """Cross-check against the config's `model.source` ("synthetic" or "pretrained"), the
        one setting outside the variant a backend depends on; ValueError naming the key."""

    def check_local_files(self, variant: Any, config_dir: Path) -> None:
        """Config-time check of files the variant names; ConfigError naming the key."""

    # --- run ----------------------------------------------------------------------------
    def runtime_modules(self, variant: Any) -> dict[str, str]:
        """{module: distribution that installs it} the variant's loading imports. By default
        the backend's `packages`, whose import names are their distribution names."""
        return {name.replace("-", "_"): name for name in self.packages}

    def check_runtime(self, variant: Any) -> None:
        """Called in the cell before loading: MissingPackages naming each module the variant
        needs that is not importable here (the cell's own environment, a Ray node's too)."""
        missing = {m: d for m, d in self.runtime_modules(variant).items() if not importable(m)}
        if missing:
            shown = ", ".join(
                m if m == d else f"{m} (distribution {d})" for m, d in missing.items()
            )
            raise MissingPackages(
                f"{self.label(variant)} needs {shown}, not installed in this environment: "
                f"pip install {' '.join(missing.values())}"
            )

    def prepare_message(self, variant: Any) -> str | None:
        """What preparing does, when it takes a while (shown while it runs)."""
        return None

    def prepare(self, variant: Any, base: str, config_dir: Path) -> Prepared:
        """Make or find what the cells load, in the parent (never charged to a cell)."""
        return Prepared()

    def load_pipeline(
        self, base: str, variant: Any, artifacts: dict[str, str], revision: str | None
    ) -> Any:
        """The whole pipeline on the host, loaded the way diffusers' documentation shows,
        ready for the offload mode. An exception is the measurement: never worked around."""
        raise NotImplementedError

    # --- size ---------------------------------------------------------------------------
    def size_variant(self, base: Any, spec: dict[str, Any], cell: dict[str, Any] | None) -> Any:
        """This variant sized by `bench size` (a bench.sizing.sources.Variant) from its config
        entry (`spec`, as recorded in a manifest) and, for a recorded cell, its manifest entry."""
        raise NotImplementedError(f"bench size does not size {self.kind} variants yet")

    def size_presets(self) -> list[dict[str, Any]]:
        """Variant specs `bench size` ranks by default for this backend (may be empty)."""
        return []
