"""`compare_runs` and `bench compare` on hand-written run folders with planted changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bench.cli.compare import compare_command
from bench.comparison.load import load_run
from bench.comparison.render import to_markdown
from bench.comparison.verdicts import Thresholds, compare_runs
from bench.errors import UserInputError
from tests.compare.rundir import (
    CPU_ENV,
    GIB,
    PROMPTS,
    CellPlan,
    cell_id,
    lognormal_times,
    write_run,
)

FULL = cell_id("full", "none")
Q8 = cell_id("Q8_0", "none")
MIB = 1 << 20


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(compare_command)
    return app


def invoke(*args: str) -> Any:
    return CliRunner().invoke(_app(), [str(a) for a in args])


def psnr(shift: float = 0.0) -> dict[str, float]:
    return {p["id"]: 40.0 + 0.1 * i + shift for i, p in enumerate(PROMPTS)}


def pair(
    tmp_path: Path,
    *,
    q8_slowdown: float = 1.0,
    q8_memory: float = 1.0,
    q8_psnr_shift: float = 0.0,
    cand_status: str = "ok",
    n: int = 20,
    seed: int = 0,
    **cand_kwargs: Any,
) -> tuple[Path, Path]:
    """Two runs of a full and a Q8_0 cell (10 prompts x n/10 repeats); the candidate's Q8_0
    cell slowed down, grew or lost PSNR by the given amounts, or has another status."""
    rng = np.random.default_rng(seed)
    prompts = PROMPTS
    repeats = n // len(prompts)

    def cells(slow: float, memory: float, shift: float, status: str) -> list[CellPlan]:
        return [
            CellPlan("full", wall_s=lognormal_times(rng, n, 2.0, 0.03), nvml_peak=30 * GIB),
            CellPlan(
                "Q8_0",
                status=status,
                wall_s=lognormal_times(rng, n, 2.2 * slow, 0.03),
                nvml_peak=int(1 * GIB + 16 * GIB * memory),
                energy_j=lognormal_times(rng, n, 600.0 * slow, 0.03),
                scores={"psnr": {k: v + rng.normal(0, 0.05) for k, v in psnr(shift).items()}},
            ),
        ]

    base = write_run(tmp_path, "base", cells(1.0, 1.0, 0.0, "ok"), prompts, repeats)
    cand = write_run(
        tmp_path,
        "cand",
        cells(q8_slowdown, q8_memory, q8_psnr_shift, cand_status),
        prompts,
        repeats,
        **cand_kwargs,
    )
    return base, cand


def test_identical_settings_no_change_exit_0(tmp_path: Path) -> None:
    base, cand = pair(tmp_path)
    comparison = compare_runs(base, cand)
    assert comparison.comparable and comparison.exit_code == 0
    q8 = next(c for c in comparison.cells if c.cell_id == Q8)
    assert q8.time is not None and q8.time.verdict == "no change"
    assert q8.time.n_base == q8.time.n_cand == 20
    assert q8.memory is not None and q8.memory.verdict == "no change"
    assert q8.memory.counter == "NVML device used above baseline"
    assert q8.memory.base_bytes == 16 * GIB  # peak 17 GiB minus the 1 GiB baseline
    assert q8.energy is not None and q8.energy.verdict == "no change"
    assert [q.verdict for q in q8.quality] == ["no change"]
    result = invoke(base, cand)
    assert result.exit_code == 0, result.output
    assert "0 regression(s)" in result.output


def test_planted_slowdown_memory_energy_and_quality_regressions_exit_1(tmp_path: Path) -> None:
    base, cand = pair(tmp_path, q8_slowdown=1.25, q8_memory=1.2, q8_psnr_shift=-2.0)
    json_path, md_path = tmp_path / "cmp.json", tmp_path / "cmp.md"
    result = invoke(base, cand, "--json", json_path, "--markdown", md_path)
    assert result.exit_code == 1, result.output
    payload = json.loads(json_path.read_text())
    assert payload["exit_code"] == 1 and payload["comparable"] is True
    regressions = {(r["cell_id"], r["aspect"]) for r in payload["regressions"]}
    assert regressions == {(Q8, "time"), (Q8, "energy"), (Q8, "memory"), (Q8, "quality:psnr")}
    q8 = next(c for c in payload["cells"] if c["cell_id"] == Q8)
    assert q8["time"]["verdict"] == "slower" and q8["time"]["ratio"] == pytest.approx(1.25, 0.05)
    assert q8["memory"]["verdict"] == "bigger"
    assert q8["quality"][0]["verdict"] == "worse"
    assert q8["quality"][0]["diff_mean"] == pytest.approx(-2.0, abs=0.1)
    assert q8["quality"][0]["ci_high"] < 0
    full = next(c for c in payload["cells"] if c["cell_id"] == FULL)
    assert full["regressions"] == [] and full["time"]["verdict"] == "no change"
    markdown = md_path.read_text()
    assert f"❌ {Q8}" in markdown and "**Result: exit 1**" in markdown


def test_speedup_is_an_improvement_not_a_failure(tmp_path: Path) -> None:
    base, cand = pair(tmp_path, q8_slowdown=0.8, q8_memory=0.7)
    comparison = compare_runs(base, cand)
    assert comparison.exit_code == 0
    assert set(comparison.improvements) == {(Q8, "time"), (Q8, "energy"), (Q8, "memory")}


def test_time_factor_option_changes_the_verdict(tmp_path: Path) -> None:
    base, cand = pair(tmp_path, q8_slowdown=1.07)
    assert invoke(base, cand).exit_code == 0
    strict = invoke(base, cand, "--time-factor", "1.03", "--energy-factor", "1.5")
    assert strict.exit_code == 1, strict.output
    assert f"{Q8} time" in strict.output.replace("\n", " ")


def test_newly_failing_and_newly_working_cells(tmp_path: Path) -> None:
    base, cand = pair(tmp_path, cand_status="failed")
    comparison = compare_runs(base, cand)
    assert comparison.regressions == [(Q8, "status")]
    q8 = next(c for c in comparison.cells if c.cell_id == Q8)
    assert q8.status_verdict == "newly failing"
    assert q8.cand_error is not None and "OutOfMemoryError" in q8.cand_error
    assert comparison.exit_code == 1
    reverse = compare_runs(cand, base, force=False)
    assert reverse.improvements == [(Q8, "status")] and reverse.exit_code == 0


def test_cells_in_one_run_only_are_listed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    times = lognormal_times(rng, 10, 2.0, 0.03)
    base = write_run(
        tmp_path, "base", [CellPlan("full", wall_s=times), CellPlan("Q4_K", wall_s=times)]
    )
    cand = write_run(
        tmp_path, "cand", [CellPlan("full", wall_s=times), CellPlan("Q6_K", wall_s=times)]
    )
    comparison = compare_runs(base, cand, force=True)
    assert comparison.only_in_base == [cell_id("Q4_K", "none")]
    assert comparison.only_in_cand == [cell_id("Q6_K", "none")]
    assert [c.cell_id for c in comparison.cells] == [FULL]


def test_not_comparable_lists_every_difference_and_exits_2(tmp_path: Path) -> None:
    env = json.loads(json.dumps(CPU_ENV))
    env["gpus"][0]["name"] = "NVIDIA A10"
    env["packages"]["diffusers"] = "0.42.1"
    prompts = [dict(p) for p in PROMPTS]
    prompts[3]["text"] = "a different prompt"

    def more_steps(config: dict[str, Any]) -> None:
        config["steps"] = 28

    base, cand = pair(
        tmp_path,
        environment=env,
        config_hash="ffff000011112222",
        config_changes=more_steps,
    )
    # Rewrite the candidate's prompts (the same ids, one text changed).
    manifest = json.loads((cand / "manifest.json").read_text())
    manifest["prompts"] = prompts
    (cand / "manifest.json").write_text(json.dumps(manifest))
    comparison = compare_runs(base, cand)
    fields = {d.field for d in comparison.differences}
    assert fields == {
        "config_hash",
        "config.steps",
        "prompts.p03",
        "environment.gpus[0]",
    }
    assert [(v.field, v.base, v.cand) for v in comparison.versions] == [
        ("packages.diffusers", "0.41.0", "0.42.1")
    ]
    result = invoke(base, cand)
    assert result.exit_code == 2
    for name in fields:
        assert name in result.output
    assert "not comparable" in result.output
    forced = invoke(base, cand, "--force")
    assert forced.exit_code == 0, forced.output
    assert "forced despite 4 difference(s)" in forced.output
    assert "environment.gpus[0]" in forced.output


def test_a_config_key_added_later_compares_equal_at_its_default(tmp_path: Path) -> None:
    """The demo made before `cell_order` existed and the demo made after (which records its
    default) are the same measurement; a non-default value of a new key is a difference."""

    def later(value: str) -> Any:
        def change(config: dict[str, Any]) -> None:
            config["cell_order"] = value
            config["seed_strategy"] = "hashed"  # another key with its default
            config["guidance"] = 7.0  # not the default: blocks

        return change

    base, cand = pair(tmp_path, config_changes=later("offload"))
    fields = {d.field for d in compare_runs(base, cand).differences}
    assert fields == {"config.guidance"}  # cell_order is ignored, seed_strategy the default


def test_bad_input_is_one_stderr_line_exit_2(tmp_path: Path) -> None:
    base, _cand = pair(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    for other in (empty, tmp_path / "missing"):
        result = invoke(base, other)
        assert result.exit_code == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(other) in lines[0]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({"schema": 1, "run_id": "x"}))
    result = invoke(base, broken)
    assert (
        result.exit_code == 2 and "missing or not a list: cells, images, prompts" in result.stderr
    )
    (broken / "manifest.json").write_text("{not json")
    assert "not valid JSON" in invoke(broken, base).stderr
    bad = invoke(base, base, "--time-factor", "0.9")
    assert bad.exit_code == 2 and "--time-factor" in bad.stderr
    margin = invoke(base, base, "--quality-margin", "psnr")
    assert margin.exit_code == 2 and "METRIC=VALUE" in margin.stderr


def test_quality_margin_option_and_metric_filter(tmp_path: Path) -> None:
    base, cand = pair(tmp_path, q8_psnr_shift=-0.3)
    assert compare_runs(base, cand).exit_code == 0  # within the 0.5 dB default margin
    result = invoke(base, cand, "--quality-margin", "psnr=0.1", "--json", tmp_path / "o.json")
    assert result.exit_code == 1
    payload = json.loads((tmp_path / "o.json").read_text())
    assert payload["thresholds"]["quality_margins"]["psnr"] == 0.1
    only_ssim = compare_runs(base, cand, Thresholds(quality_metrics=("ssim",)))
    assert all(c.quality == [] for c in only_ssim.cells)


def test_identity_loss_is_judged_like_any_change(tmp_path: Path) -> None:
    """An image identical to full precision in base and not in the candidate is a change like
    any other (issue 27): one prompt whose SSIM goes from 1.0 to 0.999999 is inside the margin
    and alone (not significant), so no verdict and exit 0, where it used to be `worse` with
    n_prompts=0. PSNR has no value at identity, so that prompt is not among its pairs."""
    times = lognormal_times(np.random.default_rng(3), 10, 2.0, 0.03)
    ones = {p["id"]: 1.0 for p in PROMPTS}
    same = {p["id"]: None for p in PROMPTS}

    def run(name: str, ssim: dict[str, float], psnr: dict[str, float | None]) -> Path:
        plan = CellPlan(
            "noise",
            wall_s=times,
            scores={"ssim": ssim, "psnr": psnr},
            identical_value={"ssim": 1.0},
        )
        return write_run(tmp_path, name, [plan])

    base = run("base", ones, same)
    one_lost = run("cand", {**ones, "p03": 0.999999}, {**same, "p03": 60.0})
    comparison = compare_runs(base, one_lost)
    quality = {q.metric: q for q in comparison.cells[0].quality}
    assert quality["ssim"].verdict == "no change" and quality["ssim"].n_prompts == 10
    assert quality["ssim"].p_value == 1.0  # one nonzero difference: half the sign flips match it
    assert quality["psnr"].verdict == "insufficient data" and quality["psnr"].n_prompts == 0
    assert "p03" in (quality["psnr"].note or "") and "base only" in (quality["psnr"].note or "")
    assert comparison.exit_code == 0
    # Every prompt losing identity by more than the margin: a regression, by the same rule.
    broken = run(
        "broken",
        {p["id"]: 0.95 + 0.001 * i for i, p in enumerate(PROMPTS)},
        {p["id"]: 30.0 for p in PROMPTS},
    )
    worse = compare_runs(base, broken)
    quality = {q.metric: q for q in worse.cells[0].quality}
    assert quality["ssim"].verdict == "worse" and quality["ssim"].diff_mean < -0.005
    assert worse.exit_code == 1
    assert compare_runs(base, base).cells[0].quality[0].verdict == "insufficient data"


def test_identical_repeats_are_averaged_with_their_value(tmp_path: Path) -> None:
    """docs/scores.md: SSIM of identical images is 1 and is averaged normally; compare reads
    repeats [1.0 identical, 0.98] as 0.99 (it used to drop the identical one: 0.98)."""
    times = lognormal_times(np.random.default_rng(5), 20, 2.0, 0.03)
    plan = CellPlan(
        "Q8_0",
        wall_s=times,
        scores={"ssim": {p["id"]: [1.0, 0.98] for p in PROMPTS}},
        identical_value={"ssim": 1.0},
    )
    run_dir = write_run(tmp_path, "base", [plan], PROMPTS, repeats=2)
    scores = load_run(run_dir).cells[cell_id("Q8_0", "none")].scores["ssim"]
    assert scores.values == pytest.approx({p["id"]: 0.99 for p in PROMPTS})
    assert scores.identical == set()


def test_many_quality_tests_are_corrected_as_one_family(tmp_path: Path) -> None:
    """Twenty cells, each with a PSNR loss of about 1 dB (sign-flip p 0.002-0.05 alone): called
    `worse` one by one at 0.05, decided together (Benjamini-Hochberg) only where the run's
    evidence holds. The JSON records the adjusted p and the correction."""
    rng = np.random.default_rng(6)
    times = lognormal_times(rng, 10, 2.0, 0.03)
    base_cells, cand_cells = [], []
    for k in range(20):
        base_psnr = {p["id"]: 35.0 + rng.normal(0, 1) for p in PROMPTS}
        # -1 dB on average with per-prompt sd 1 dB: significant alone in most cells.
        cand_psnr = {p: v - 1.0 + rng.normal(0, 1.0) for p, v in base_psnr.items()}
        base_cells.append(CellPlan(f"v{k}", wall_s=times, scores={"psnr": base_psnr}))
        cand_cells.append(CellPlan(f"v{k}", wall_s=times, scores={"psnr": cand_psnr}))
    base = write_run(tmp_path, "base", base_cells)
    cand = write_run(tmp_path, "cand", cand_cells)
    alone = compare_runs(base, cand, Thresholds(quality_correction="none"))
    together = compare_runs(base, cand)
    worse_alone = [c.quality[0] for c in alone.cells if c.quality[0].verdict == "worse"]
    worse_together = [c.quality[0] for c in together.cells if c.quality[0].verdict == "worse"]
    assert 0 < len(worse_together) < len(worse_alone)
    verdicts = [c.quality[0] for c in together.cells]
    assert all(v.correction == "benjamini-hochberg over 20 quality test(s)" for v in verdicts)
    assert all(v.p_adjusted >= v.p_value for v in verdicts)
    assert all(v.p_adjusted < 0.05 for v in worse_together)
    assert all(
        v.p_adjusted is None and v.correction is None for c in alone.cells for v in c.quality
    )
    payload = together.as_dict()
    assert payload["thresholds"]["quality_correction"] == "benjamini-hochberg"
    with pytest.raises(UserInputError, match="quality_correction 'holm': expected one of"):
        Thresholds(quality_correction="holm")
    markdown = to_markdown(together)
    assert "corrected)" in markdown  # p=..., ... corrected
    assert "sign-flip test, p corrected by benjamini-hochberg over 20 quality test(s)" in markdown
    assert "t/bootstrap-t 95% over prompts" in markdown
    assert "p_adjusted" in payload["cells"][0]["quality"][0]


def test_stability_warnings_reach_the_outputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    times = lognormal_times(rng, 10, 2.0, 0.03)
    times[0] = 6.0  # the first image paid for lazy initialisation
    base = write_run(tmp_path, "base", [CellPlan("full", wall_s=times)])
    comparison = compare_runs(base, base)
    kinds = {(run, w.kind) for run, w in comparison.cells[0].warnings}
    assert ("base", "warmup") in kinds and ("cand", "warmup") in kinds
    assert "first image 3.0x slower" in to_markdown(comparison)


def test_json_schema(tmp_path: Path) -> None:
    base, cand = pair(tmp_path)
    payload = json.loads(json.dumps(compare_runs(base, cand).as_dict()))
    assert set(payload) == {
        "schema",
        "kind",
        "base",
        "cand",
        "comparable",
        "forced",
        "differences",
        "versions",
        "thresholds",
        "cells",
        "only_in_base",
        "only_in_cand",
        "regressions",
        "improvements",
        "too_noisy",
        "exit_code",
    }
    cell = payload["cells"][1]
    assert set(cell) == {
        "cell_id",
        "variant",
        "offload",
        "resolution",
        "status",
        "time",
        "energy",
        "memory",
        "memory_counters",
        "quality",
        "distribution",
        "warnings",
        "regressions",
        "improvements",
        "too_noisy",
    }
    assert set(cell["time"]) == {
        "verdict",
        "base_median",
        "cand_median",
        "ratio",
        "p_value",
        "n_base",
        "n_cand",
        "note",
        "noise_band",
    }
    memory_keys = {
        "verdict",
        "counter",
        "base_bytes",
        "cand_bytes",
        "ratio",
        "diff_bytes",
        "note",
        "key",
        "phase",
        "n_base",
        "n_cand",
        "p_value",
        "noise_band",
    }
    assert set(cell["memory"]) == memory_keys
    assert all(set(m) == memory_keys for m in cell["memory_counters"])
    assert [(m["key"], m["phase"]) for m in cell["memory_counters"]] == [
        ("nvml_used_peak_bytes", "images"),
        ("host_rss_peak_bytes", "images"),
        ("nvml_used_peak_bytes", "load"),
        ("nvml_used_peak_bytes", "warmup"),
    ]
    assert payload["thresholds"]["memory_bands"]["host_rss"] == 1.15
    assert set(cell["quality"][0]) == {
        "verdict",
        "metric",
        "higher_is_better",
        "base_mean",
        "cand_mean",
        "diff_mean",
        "ci_low",
        "ci_high",
        "p_value",
        "margin",
        "n_prompts",
        "method",
        "note",
        "p_adjusted",
        "correction",
    }
    assert payload["thresholds"]["quality_correction"] == "benjamini-hochberg"


def test_busy_candidate_is_too_noisy_not_a_regression(tmp_path: Path) -> None:
    """A candidate run made while the machine was busy: 3x slower as a whole, images varying
    by 40%. Listed as too noisy to judge, exit 0, and the bottom line says so."""
    rng = np.random.default_rng(7)
    base = write_run(tmp_path, "base", [CellPlan("full", wall_s=lognormal_times(rng, 10))])
    busy = lognormal_times(rng, 10, 6.0, 0.4)
    cand = write_run(tmp_path, "cand", [CellPlan("full", wall_s=busy)])
    comparison = compare_runs(base, cand)
    cell = comparison.cells[0]
    assert cell.time is not None and cell.time.verdict == "too noisy to judge at this threshold"
    assert cell.time.ratio is not None and cell.time.ratio > 2
    assert comparison.exit_code == 0 and comparison.too_noisy == [(FULL, "time")]
    result = invoke(base, cand, "--json", tmp_path / "o.json")
    assert result.exit_code == 0, result.output
    assert "too noisy to judge at these thresholds: time in 1 cell(s)" in result.output
    payload = json.loads((tmp_path / "o.json").read_text())
    assert payload["too_noisy"] == [{"cell_id": FULL, "aspect": "time"}]
    assert "too noisy" in to_markdown(comparison)


def test_unequally_busy_runs_are_too_noisy(tmp_path: Path) -> None:
    """Both runs look steady, but the memory sampler fell behind in the candidate: the
    machine was busier, so a 30% slower candidate is not called slower."""
    rng = np.random.default_rng(8)
    base = write_run(tmp_path, "base", [CellPlan("full", wall_s=lognormal_times(rng, 10))])
    slow = lognormal_times(rng, 10, 2.6, 0.04)
    busy = write_run(tmp_path, "busy", [CellPlan("full", wall_s=slow, sampler_hz=170.0)])
    calm = write_run(tmp_path, "calm", [CellPlan("full", wall_s=slow)])
    noisy = compare_runs(base, busy).cells[0].time
    assert noisy is not None and noisy.verdict == "too noisy to judge at this threshold"
    assert "memory sampler ran at 190/s in base and 170/s" in (noisy.note or "")
    slower = compare_runs(base, calm).cells[0].time
    assert slower is not None and slower.verdict == "slower"


def test_memory_band_option(tmp_path: Path) -> None:
    base, cand = pair(tmp_path)
    bad = invoke(base, cand, "--memory-band", "vram=1.1")
    assert bad.exit_code == 2 and "--memory-band" in bad.stderr and "host_rss" in bad.stderr
    low = invoke(base, cand, "--memory-band", "host_rss=0.9")
    assert low.exit_code == 2 and "RATIO >= 1" in low.stderr
    ok = invoke(
        base, cand, "--memory-band", "host_rss=1.02,nvml_used=1.01", "--json", tmp_path / "o.json"
    )
    assert ok.exit_code == 0, ok.output
    bands = json.loads((tmp_path / "o.json").read_text())["thresholds"]["memory_bands"]
    assert bands["host_rss"] == 1.02 and bands["nvml_used"] == 1.01


def test_unfinished_candidate_is_flagged_and_its_missing_cells_fail(tmp_path: Path) -> None:
    base, cand = pair(tmp_path)
    manifest = json.loads((cand / "manifest.json").read_text())
    manifest["finished_at"] = None
    (cand / "manifest.json").write_text(json.dumps(manifest))
    records = (cand / "records.jsonl").read_text().splitlines()
    kept = [r for r in records if json.loads(r)["cell_id"] != Q8]  # killed before Q8_0 ran
    (cand / "records.jsonl").write_text("\n".join(kept) + "\n")
    comparison = compare_runs(base, cand)
    assert comparison.regressions == [(Q8, "status")]
    q8 = next(c for c in comparison.cells if c.cell_id == Q8)
    assert q8.cand_status == "missing"
    result = invoke(base, cand)
    assert result.exit_code == 1
    assert "has not finished" in result.output
    assert "has not finished" in to_markdown(comparison)


def test_energy_spread_is_warned_about(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    times = lognormal_times(rng, 10, 2.0, 0.03)
    energy = lognormal_times(rng, 10, 600.0, 0.3)
    run = write_run(tmp_path, "base", [CellPlan("full", wall_s=times, energy_j=energy)])
    warnings = compare_runs(run, run).cells[0].warnings
    assert any(w.kind == "high_spread" and w.message.startswith("energy") for _, w in warnings)
    assert not any(w.message.startswith("wall time") for _, w in warnings)


def _add_distribution_row(run_dir: Path, n: int, value: float, floor: float) -> None:
    row = {
        "schema": 1,
        "kind": "distribution_score",
        "cell_id": Q8,
        "variant": "Q8_0",
        "offload": "none",
        "height": 512,
        "width": 512,
        "metric": "cmmd",
        "value": value,
        "higher_is_better": False,
        "reference_cell_id": FULL,
        "features": "clip:tiny",
        "n": n,
        "n_reference": 20,
        "minimum": 10,
        "status": "ok",
        "note": None,
        "floor": floor,
        "floor_method": "closed form",
        "time": "2026-01-01T00:00:00.000+00:00",
    }
    with (run_dir / "scores.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def test_distribution_metrics_shown_with_their_floor_and_flagged_when_n_differs(
    tmp_path: Path,
) -> None:
    base, cand = pair(tmp_path)
    _add_distribution_row(base, 20, 0.9, 0.8)
    _add_distribution_row(cand, 20, 1.1, 0.8)
    comparison = compare_runs(base, cand)
    (shown,) = next(c for c in comparison.cells if c.cell_id == Q8).distribution
    assert shown.verdict == "not judged" and (shown.base_value, shown.cand_value) == (0.9, 1.1)
    assert comparison.exit_code == 0  # one value per run: never a regression
    assert "cmmd 0.9 → 1.1 (floor 0.8 at n=20; not judged)" in to_markdown(comparison)
    _add_distribution_row(cand, 18, 0.95, 0.85)  # rescored with fewer images: the latest row
    comparison = compare_runs(base, cand)
    (shown,) = next(c for c in comparison.cells if c.cell_id == Q8).distribution
    assert shown.verdict == "not comparable" and "n 20 vs 18" in (shown.note or "")
    assert comparison.as_dict()["cells"][1]["distribution"][0]["verdict"] == "not comparable"
