"""What the families' denoisers have in common for `bench size`: the peak of one transformer
block as a number of live (tokens × hidden) tensors (docs/size.md). Each family counts its own
block's live tensors and says which block it is; the arithmetic is written once here."""

from __future__ import annotations

from bench.sizing.components import DTYPE_BYTES, Component


def block_peak(
    transformer: Component,
    tokens: int,
    rows: int,
    dtype: str,
    live_units: tuple[int, int],
    where: str,
) -> tuple[int, str]:
    """``live_units`` (at 16-bit, at float32) tensors of tokens × hidden (heads × head dim) for
    ``rows`` sequences at ``dtype``: (bytes, why), the why naming the block as ``where`` says."""
    cfg = transformer.config
    hidden = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
    half, float32 = live_units
    units = float32 if dtype == "float32" else half
    b = DTYPE_BYTES[dtype]
    why = (
        f"{units} live tensors of tokens×hidden = {units}×{rows}×{tokens}×{hidden}×{b} B at the "
        f"peak of {where}"
    )
    return units * rows * tokens * hidden * b, why
