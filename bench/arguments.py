"""Checks of argument values that library functions behind a command and the Python API share.

A command's options arrive typed by typer; the same functions called from Python get whatever
the caller passed (``"64"`` for a height, ``16`` for a memory size, a bare string for a list of
names). Each check raises bench.errors.ArgumentError naming the parameter, which the `bench`
command prints as its option (``--height``) and the Python API as its parameter (``height=``),
instead of a TypeError from deep inside a formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from bench.errors import ArgumentError


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def whole_number(
    value: Any, parameter: str, low: int, high: int, *, option: str | None = None
) -> int:
    """`value` as an int from `low` to `high` (a bool or a float is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ArgumentError(
            parameter,
            f"expected a whole number from {low} to {high} (got {_shown(value)})",
            option=option,
        )
    return value


def number(
    value: Any, parameter: str, low: float, high: float, *, option: str | None = None
) -> float:
    """`value` as a finite float from `low` to `high` (an int is one; a bool is not)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise ArgumentError(
            parameter,
            f"expected a number from {low:g} to {high:g} (got {_shown(value)})",
            option=option,
        )
    return float(value)


def flag(value: Any, parameter: str, *, option: str | None = None) -> bool:
    """True or False (not 0, 1 or a string: ``progress="no"`` would read as true)."""
    if not isinstance(value, bool):
        raise ArgumentError(
            parameter, f"expected True or False (got {_shown(value)})", option=option
        )
    return value


def finite(value: Any, parameter: str, *, option: str | None = None) -> float:
    """Any finite number (an int is one; a bool, NaN or infinity is not)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value):
        raise ArgumentError(
            parameter, f"expected a finite number (got {_shown(value)})", option=option
        )
    return float(value)


def text(value: Any, parameter: str, *, option: str | None = None) -> str:
    """A non-blank string."""
    if not isinstance(value, str) or not value.strip():
        raise ArgumentError(
            parameter, f"expected a non-empty string (got {_shown(value)})", option=option
        )
    return value


def names(value: Any, parameter: str, *, option: str | None = None) -> list[str] | None:
    """None, one name (a bare string is that one name, never its characters) or a sequence of
    non-blank strings, as a list; an empty sequence is None (nothing selected: the default)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [text(value, parameter, option=option)]
    if not isinstance(value, Sequence | set | frozenset):
        raise ArgumentError(
            parameter,
            f"expected a string or a list of strings (got {_shown(value)})",
            option=option,
        )
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ArgumentError(
                parameter,
                f"expected a string or a list of strings; one item is {_shown(item)}",
                option=option,
            )
        out.append(item)
    return out or None


def path(value: Any, parameter: str, *, option: str | None = None) -> Path:
    """A str or os.PathLike as a Path (not blank)."""
    if isinstance(value, PathLike):
        value = Path(value)
    if isinstance(value, Path) and str(value).strip():
        return value
    if isinstance(value, str) and value.strip():
        return Path(value)
    raise ArgumentError(
        parameter, f"expected a path (a str or pathlib.Path; got {_shown(value)})", option=option
    )


def number_map(value: Any, parameter: str, *, option: str | None = None) -> dict[str, float] | None:
    """None or a mapping of names to finite numbers (a NaN margin would compare false with
    everything: never a regression)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ArgumentError(
            parameter,
            f"expected a mapping of names to numbers (got {_shown(value)})",
            option=option,
        )
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip():
            raise ArgumentError(
                parameter, f"expected string keys; one is {_shown(key)}", option=option
            )
        ok = isinstance(item, int | float) and not isinstance(item, bool)
        if not ok or not math.isfinite(item):
            raise ArgumentError(
                parameter, f"{key}: expected a finite number (got {_shown(item)})", option=option
            )
        out[key] = float(item)
    return out


def paths(value: Any, parameter: str, *, option: str | None = None) -> list[Path] | None:
    """None, one path, or a sequence of them, as a list of Paths."""
    if value is None:
        return None
    if isinstance(value, str | PathLike):
        return [path(value, parameter, option=option)]
    if not isinstance(value, Sequence):
        raise ArgumentError(
            parameter, f"expected a path or a list of paths (got {_shown(value)})", option=option
        )
    return [path(item, parameter, option=option) for item in value] or None


def output_file(value: Any, parameter: str, *, option: str | None = None) -> Path:
    """A path a file can be written at: not a folder, in a folder that exists. Checked before
    the work whose result it receives, so a typo costs one line, not the work and a leftover
    temporary file."""
    target = path(value, parameter, option=option)
    if target.is_dir():
        raise ArgumentError(
            parameter, f"{target} is a folder; expected a file to write", option=option
        )
    if not target.parent.is_dir():
        raise ArgumentError(
            parameter, f"{target}: its folder {target.parent} does not exist", option=option
        )
    return target
