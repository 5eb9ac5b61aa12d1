"""Sizes as users type them."""

from __future__ import annotations

import pytest

from bench.errors import UserInputError
from bench.sizing.units import GIB, MIB, fmt_bytes, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12GiB", 12 * GIB),
        ("12 GB", 12 * GIB),
        ("12G", 12 * GIB),
        ("16384MiB", 16 * GIB),
        ("1.5 gib", int(1.5 * GIB)),
        ("512", 512),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["12 potatoes", "GiB", "", "-3GiB", "0GiB", "12 G B"])
def test_malformed_size_is_one_clear_line(text: str) -> None:
    with pytest.raises(UserInputError) as info:
        parse_size(text)
    assert "\n" not in str(info.value)
    assert repr(text) in str(info.value)


def test_fmt_bytes_switches_to_mib_below_a_gib() -> None:
    assert fmt_bytes(30 * MIB) == "30.0 MiB"
    assert fmt_bytes(3 * GIB) == "3.00 GiB"
