"""The strict pydantic base and the value checks every config model shares.

Its own module, below everything else in the config, so that the models built on it can import
one another in one direction: bench.offload (the offload spec) and bench.config_fields (the
variant base, whose `offload_modes` names bench.offload's modes) both stand on this.
"""

from __future__ import annotations

from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict

# A validation context with this key set (True) reads a config recorded in a run folder: the
# rules that only protect new runs (sizes the pipeline would round, file URLs diffusers cannot
# load) are not re-applied to what was already measured.
RECORDED = "recorded"


def _within(low: float, high: float, expected: str) -> AfterValidator:
    """A bound check whose error says what was expected, in the words of its kind of number."""

    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(expected)
        return value

    return AfterValidator(check)


def int_range(low: int, high: int) -> AfterValidator:
    return _within(low, high, f"expected an integer from {low} to {high}")


def float_range(low: float, high: float) -> AfterValidator:
    return _within(low, high, f"expected a finite number from {low:g} to {high:g}")


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def unique(values: list[Any]) -> list[Any]:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ValueError(f"duplicate entries {sorted(set(map(str, seen)))}")
    return values


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt key silently ignored would change what is measured.

    Strict types: YAML's `true` is not the integer 1, "4" is not 4 and 4.0 is not 4; NaN and
    infinity are not numbers a setting can have.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
