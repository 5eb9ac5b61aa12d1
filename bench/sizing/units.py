"""Memory sizes as people write them ("12GiB", "12 GB", "16384MiB") and as reports print them.

GPU vendors sell "12 GB" cards that hold 12 GiB (an RTX 3060 reports 12288 MiB in nvidia-smi),
so `G`/`GB` mean GiB here, as GPU spec sheets count. A plain number (also "12e9") is bytes.
Reports print GiB (2^30), labelled, so a figure never leaves its unit to be guessed.
"""

from __future__ import annotations

import re

from bench.errors import ArgumentError

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


#: The largest size a budget may name (1 EiB): far above any card, and a float beyond it (or
#: "1e400GiB", infinity) cannot become a byte count.
MAX_BYTES = 1 << 60


def parse_size(text: str, parameter: str = "vram") -> int:
    """Bytes in `text`; raises ArgumentError naming `parameter` with one line saying what was
    expected.

    Binary units throughout (GB = GiB): a "16 GB" card has 16 GiB of memory. A plain number is
    bytes; a number that is not a string (``vram=16`` from Python) is refused rather than
    guessed at.
    """
    if not isinstance(text, str):
        raise ArgumentError(
            parameter,
            f"expected a size as text, such as '16GiB' or '16384MiB' (got {text!r}: a number "
            "alone does not say its unit)",
        )
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ArgumentError(
            parameter,
            f"{text!r}: expected a number with a unit such as 12GiB, 12 GB, 12G or 16384MiB",
        )
    value = float(match.group(1)) * _UNITS[unit]
    if not 0 < value <= MAX_BYTES:  # also NaN and infinity
        raise ArgumentError(parameter, f"{text!r}: expected more than zero and at most 1 EiB")
    return int(value)


def fmt_bytes(n_bytes: float) -> str:
    """GiB with two decimals above 1 GiB, MiB below: a term of 30 MiB should not read 0.03."""
    if abs(n_bytes) >= GIB:
        return f"{n_bytes / GIB:.2f} GiB"
    return f"{n_bytes / MIB:.1f} MiB"
