"""Memory sizes as people write them ("12GiB", "12 GB", "16384MiB") and as reports print them.

GPU vendors sell "12 GB" cards that hold 12 GiB (an RTX 3060 reports 12288 MiB in nvidia-smi),
so `G`/`GB` mean GiB here, as GPU spec sheets count. A plain number (also "12e9") is bytes.
Reports print GiB (2^30), labelled, as DESIGN.md asks.
"""

from __future__ import annotations

import re

from bench.errors import UserInputError

GIB = 1 << 30
MIB = 1 << 20

_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": MIB,
    "mb": MIB,
    "mib": MIB,
    "g": GIB,
    "gb": GIB,
    "gib": GIB,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?(?:[eE]\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in `text`; raises UserInputError with one line saying what was expected.

    Binary units throughout (GB = GiB): a "16 GB" card has 16 GiB of memory. A plain number is
    bytes.
    """
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise UserInputError(
            f"size {text!r}: expected a number with a unit such as 12GiB, 12 GB, 12G or 16384MiB"
        )
    value = float(match.group(1)) * _UNITS[unit]
    if value <= 0:
        raise UserInputError(f"size {text!r}: must be more than zero")
    return int(value)


def fmt_bytes(n_bytes: float) -> str:
    """GiB with two decimals above 1 GiB, MiB below: a term of 30 MiB should not read 0.03."""
    if abs(n_bytes) >= GIB:
        return f"{n_bytes / GIB:.2f} GiB"
    return f"{n_bytes / MIB:.1f} MiB"
