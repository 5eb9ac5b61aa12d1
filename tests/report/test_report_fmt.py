"""Number formatting: one figure reads the same in every table, claim and caption."""

from __future__ import annotations

import math

from bench.reporting.fmt import DASH, gib, interval, missing, num


def test_significant_figures() -> None:
    assert num(33.94) == "33.9"
    assert num(0.009801) == "0.00980"
    assert num(10162.4) == "10162"
    assert num(0) == "0"
    assert num(math.inf) == "∞"


def test_missing_values_print_as_dash() -> None:
    assert missing(None) and missing(float("nan")) and not missing(0)
    assert num(None) == DASH and gib(float("nan")) == DASH
    assert interval(None, 1, 2) == DASH


def test_gib_and_interval() -> None:
    assert gib(3 * 2**30) == "3.00"
    assert interval(48.27, 47.61, 48.93) == "48.3 [47.6, 48.9]"
    assert interval(1.0, None, None) == "1.00"
