"""Thresholds of a comparison from the options people give (`bench compare`, bench.compare()).

Every bad value is a UserInputError naming the option and what was expected, raised before
any run folder is read.
"""

from __future__ import annotations

import math

from bench.arguments import number
from bench.comparison.defaults import DEFAULT_BANDS, DEFAULT_QUALITY_MARGINS, TIME_PROCESS_BANDS
from bench.comparison.verdicts import Thresholds
from bench.errors import UserInputError
from bench.sizing.units import MIB

#: The largest memory difference `compare` may be told to ignore, in MiB (about a TB).
MAX_MIN_MIB = 1e6


def parse_margins(items: list[str] | None) -> dict[str, float]:
    """`psnr=0.3` items over the defaults; a bad item is a user error naming it."""
    margins = dict(DEFAULT_QUALITY_MARGINS)
    for item in items or []:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            try:
                margin = float(value) if sep else math.nan
            except ValueError:
                margin = math.nan
            # A NaN margin compares false with everything (never a regression); a negative
            # one calls noise a change.
            if not math.isfinite(margin) or margin < 0:
                raise UserInputError(
                    f"--quality-margin {part!r}: expected METRIC=VALUE with a finite value "
                    "of 0 or more, e.g. psnr=0.5"
                )
            margins[name.strip()] = margin
    return margins


def parse_bands(
    items: list[str] | None,
    defaults: dict[str, float] | None = None,
    option: str = "--memory-band",
    what: str = "COUNTER",
    example: str = "host_rss=1.10",
    open_names: bool = False,
) -> dict[str, float]:
    """`host_rss=1.08` items over the default A/A noise bands; names and values checked
    (`open_names`: any name is accepted, as for device types)."""
    bands = dict(DEFAULT_BANDS if defaults is None else defaults)
    for item in items or []:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            try:
                if not sep or not name or (name not in bands and not open_names):
                    raise ValueError
                band = float(value)
                if not band >= 1.0:
                    raise ValueError
            except ValueError:
                names = "a device type" if open_names else f"one of {', '.join(bands)}"
                raise UserInputError(
                    f"{option} {part!r}: expected {what}=RATIO with RATIO >= 1 and "
                    f"{what} {names}, e.g. {example}"
                ) from None
            bands[name] = band
    return bands


def check_factor(name: str, value: float) -> None:
    if not value > 1.0:
        raise UserInputError(f"--{name} {value!r}: expected a factor above 1, e.g. 1.10")


def thresholds_from_options(
    *,
    time_factor: float = 1.10,
    memory_factor: float = 1.05,
    memory_min_mib: float = 32.0,
    energy_factor: float = 1.10,
    alpha: float = 0.05,
    quality_margin: list[str] | None = None,
    quality_metric: list[str] | None = None,
    memory_band: list[str] | None = None,
    time_band: list[str] | None = None,
) -> Thresholds:
    """Validated Thresholds; `quality_margin` / `memory_band` items are `NAME=VALUE` strings
    (comma-separated or one per item), `quality_metric` items metric names."""
    for name, value in (
        ("time-factor", time_factor),
        ("memory-factor", memory_factor),
        ("energy-factor", energy_factor),
    ):
        check_factor(name, value)
    if not 0.0 < alpha < 1.0:
        raise UserInputError(f"--alpha {alpha!r}: expected a level between 0 and 1")
    metrics = [m.strip() for item in quality_metric or [] for m in item.split(",")]
    memory_min_mib = number(memory_min_mib, "memory_min_mib", 0.0, MAX_MIN_MIB)
    return Thresholds(
        time_factor=time_factor,
        memory_factor=memory_factor,
        memory_min_bytes=int(memory_min_mib * MIB),
        energy_factor=energy_factor,
        alpha=alpha,
        quality_margins=parse_margins(quality_margin),
        quality_metrics=tuple(metrics) if metrics else None,
        memory_bands=parse_bands(memory_band),
        time_bands=parse_bands(
            time_band, TIME_PROCESS_BANDS, "--time-band", "DEVICE", "cpu=1.30", open_names=True
        ),
    )
