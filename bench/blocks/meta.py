"""Models on the meta device: shapes without memory, for `bench size` and the synthetic builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def on_meta(build: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``build(*args, **kwargs)`` with every parameter on the meta device: FLUX.1-dev's 17
    billion weights take no memory until the synthetic builder fills them, and `bench size`
    only counts their bytes."""
    from accelerate import init_empty_weights  # accelerate loads torch: only to build

    with init_empty_weights():
        return build(*args, **kwargs)
