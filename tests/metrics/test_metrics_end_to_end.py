"""A real tiny sweep (synthetic FLUX, full / Q8_0 / Q6_K / Q4_K) scored by `bench score`.

The sweep is recorded (tests/fixtures/runs/quant-order/, made by tests/fixtures/make_runs.py);
the scoring runs here. The ordering full >= Q8_0 >= Q6_K >= Q4_K is measured from the
generated images, not assumed: fewer bits per weight should move the image further from full
precision for the same seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.results import cell_records, read_records
from bench.scoring import SCORES_SUMMARY, score_run
from tests.fixtures.make_runs import ORDER
from tests.fixtures.recorded import copy_recorded_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quant_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_recorded_run("quant-order", tmp_path_factory.mktemp("quant-run"))


def test_fidelity_ordering_follows_bits_per_weight(quant_run: Path) -> None:
    score_run(quant_run, ["psnr", "ssim"], progress=False)
    rows = json.loads((quant_run / SCORES_SUMMARY).read_text())["cells"]
    table = {(r["variant"], r["metric"]): r for r in rows}
    status = {
        rec["variant"]: rec["status"] for rec in cell_records(read_records(quant_run)).values()
    }
    assert status["full"] == "ok"
    measured = [v for v in ORDER if status.get(v) == "ok"]
    assert "Q8_0" in measured, status  # Q8_0 is always makeable; others may be "unavailable"
    for variant in ORDER:
        if variant not in measured:
            assert table[(variant, "psnr")]["status"] == f"cell_{status[variant]}"
    for metric in ("psnr", "ssim"):
        assert table[("full", metric)]["status"] == "reference"
        means = [table[(v, metric)]["mean"] for v in measured]
        assert all(m is not None for m in means), (metric, means)
        assert means == sorted(means, reverse=True), (metric, measured, means)
    # Q8_0 is scored on every prompt of the sample config, and SSIM stays within its range.
    assert table[("Q8_0", "psnr")]["n"] == 2
    assert table[("Q8_0", "ssim")]["mean"] <= 1.0
