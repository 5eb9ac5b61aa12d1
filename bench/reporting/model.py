"""Which model a run stands for, in the report's words.

A run folder records its family (the config's ``model.family``; folders from before families
existed have none and are FLUX) and its base (a synthetic preset or a pretrained path). The
report's warnings and its notes on published tables must name that model, not assume FLUX.1-dev,
so they ask here. The family's words come from the families registry; the name of the real
model its published-architecture preset reproduces ("Stable Diffusion 3.5 Large") is the
family's own ``real_model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.families import DEFAULT_FAMILY, FAMILIES


@dataclass(frozen=True)
class RunModel:
    """The model of one run: its family, its base, and the real model behind the family."""

    family: str  # registry key ("sd3"), as the manifest names it
    title: str  # the family in words ("SD3.5"); the key itself for a family unknown here
    real_model: str  # the real model the family's architecture preset reproduces, else title
    synthetic: bool
    preset: str | None  # synthetic preset, None for a pretrained base
    path: str | None  # pretrained path or hub id, None for a synthetic base

    @property
    def is_real_architecture(self) -> bool:
        """A synthetic preset with the published architecture (random weights), not a tiny one."""
        family = FAMILIES.get(self.family)
        return self.synthetic and family is not None and self.preset == family.real_preset

    def shape(self) -> str:
        """What a synthetic run's timings and memory describe: whose architecture, how big."""
        if self.is_real_architecture:
            return f"the shape of {self.real_model} (preset {self.preset!r}: its architecture)"
        return f"a small {self.title}-shaped pipeline (preset {self.preset!r})"


def real_model_name(family: str) -> str | None:
    """The published model a family's real-architecture preset stands for, where known."""
    entry = FAMILIES.get(family)
    return (entry.real_model or None) if entry is not None else None


def run_model(manifest: dict[str, Any]) -> RunModel:
    """The model a manifest's run used (tolerates folders written before families existed)."""
    model = (manifest.get("config") or {}).get("model") or {}
    base = manifest.get("base_model") or {}
    family = str(model.get("family") or DEFAULT_FAMILY)
    entry = FAMILIES.get(family)
    title = entry.title if entry is not None else family
    synthetic = bool(base.get("synthetic"))
    return RunModel(
        family=family,
        title=title,
        real_model=real_model_name(family) or title,
        synthetic=synthetic,
        preset=base.get("preset") if synthetic else None,
        path=None if synthetic else (base.get("path") or base.get("resolved_path")),
    )
