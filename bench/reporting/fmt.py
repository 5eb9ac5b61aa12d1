"""Number formatting shared by the tables, claims and captions, so one figure reads the same
everywhere in a report."""

from __future__ import annotations

import math
from typing import Any

GIB = float(1 << 30)
DASH = "–"


def missing(value: Any) -> bool:
    """None, NaN and pandas' NA all mean 'no value'."""
    if value is None:
        return True
    try:
        return bool(math.isnan(value))
    except (TypeError, ValueError):
        return False


def num(value: Any, digits: int = 3) -> str:
    """A float with `digits` significant figures (no scientific notation for ordinary sizes)."""
    if missing(value):
        return DASH
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


def gib(value_bytes: Any, digits: int = 3) -> str:
    if missing(value_bytes):
        return DASH
    return num(float(value_bytes) / GIB, digits)


def interval(mean: Any, low: Any, high: Any, digits: int = 3) -> str:
    """`mean [low, high]`, or just the mean when there is no interval."""
    if missing(mean):
        return DASH
    if missing(low) or missing(high):
        return num(mean, digits)
    return f"{num(mean, digits)} [{num(low, digits)}, {num(high, digits)}]"
