"""Field types and the strict base model shared by the config and every backend's variant model.

Its own module so that a backend (bench/backends/<name>.py) can define its variant model with
the same strictness as the rest of the config without importing bench.config, which builds the
variant union from the backend registry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bench import limits

DTYPES = ("float32", "bfloat16", "float16")
Dtype = Literal["float32", "bfloat16", "float16"]
OffloadMode = Literal["none", "model", "sequential", "group"]

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def int_range(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return AfterValidator(check)


def float_range(low: float, high: float) -> AfterValidator:
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"expected a finite number from {low:g} to {high:g}")
        return value

    return AfterValidator(check)


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def unique(values: list[Any]) -> list[Any]:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ValueError(f"duplicate entries {sorted(set(map(str, seen)))}")
    return values


Name = Annotated[str, Field(pattern=_NAME_PATTERN, max_length=limits.MAX_NAME_CHARS)]
VariantName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=limits.MAX_NAME_CHARS)
]
Text = Annotated[str, AfterValidator(not_blank)]
ComponentName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt key silently ignored would change what is measured.

    Strict types: YAML's `true` is not the integer 1, "4" is not 4 and 4.0 is not 4; NaN and
    infinity are not numbers a setting can have.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


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
