"""Field types and the strict base model shared by the config and every backend's variant model.

Its own module so that a backend (bench/backends/<name>.py) can define its variant model with
the same strictness as the rest of the config without importing bench.config, which builds the
variant union from the backend registry. The strict base itself is bench.config_base's; the
offload modes a variant may name are bench.offload's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, Field

from bench import limits
from bench.config_base import Strict, not_blank, unique
from bench.errors import ConfigError
from bench.offload import OffloadMode

Entry = TypeVar("Entry")

DTYPES = ("float32", "bfloat16", "float16")
Dtype = Literal["float32", "bfloat16", "float16"]

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


Name = Annotated[str, Field(pattern=_NAME_PATTERN, max_length=limits.MAX_NAME_CHARS)]
VariantName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=limits.MAX_NAME_CHARS)
]
Text = Annotated[str, AfterValidator(not_blank)]
ComponentName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]


class VariantConfig(Strict):
    """What every variant has, whatever its backend: a name and the offload modes it runs under.

    Each backend subclasses it with `kind: Literal["<its kind>"]` and its own settings.
    """

    name: VariantName
    offload_modes: (
        Annotated[
            list[OffloadMode],
            Field(min_length=1, max_length=limits.MAX_OFFLOAD_MODES),
            AfterValidator(unique),
        ]
        | None
    ) = Field(
        default=None,
        description="run this variant only under these offload modes (default: all of them)",
    )

    @property
    def pipeline_dtype(self) -> str:
        """dtype of the components the backend leaves alone (every backend model has one)."""
        return str(getattr(self, "dtype", None) or "bfloat16")


def entry_of(registry: Mapping[str, Entry], kind_or_spec: Any, owner: str, axis: str) -> Entry:
    """The entry of an axis registry (backends, speed-ups) that a kind, a recorded spec (a
    dict) or a config model names; ConfigError listing the known kinds otherwise (`owner`: what
    has the kind, a variant or a speed-up; `axis`: what its entry is)."""
    if isinstance(kind_or_spec, str):
        kind = kind_or_spec
    elif isinstance(kind_or_spec, dict):
        kind = str(kind_or_spec.get("kind"))
    else:
        kind = str(kind_or_spec.kind)
    try:
        return registry[kind]
    except KeyError:
        raise ConfigError(
            f"{owner} kind {kind!r}: not a known {axis} (known: {', '.join(registry)})"
        ) from None
