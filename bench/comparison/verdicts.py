"""Join two runs cell by cell and give each cell a verdict per aspect: status, time, memory,
energy, quality.

The regressions a CI job must fail on are: a cell that ran and now fails, a cell significantly
slower (or hungrier for energy) by more than a factor, a bigger memory peak on any counter, and a
significant loss of fidelity beyond a margin. An aspect whose measurement is noisier than its
threshold is "too noisy to judge at this threshold": listed apart, neither a regression nor a
pass. Everything else is reported but passes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.comparison.comparability import Difference, blocking_differences, version_changes
from bench.comparison.defaults import DEFAULT_BANDS, DEFAULT_QUALITY_MARGINS, TIME_PROCESS_BANDS
from bench.comparison.load import CellData, ComparedRun, PromptScores, load_run
from bench.comparison.memory import (
    EXACT_MIN_BYTES,
    combined_verdict,
    counter_verdicts,
)
from bench.comparison.stability import (
    MAX_OTHERS_SHARE,
    MAX_SAMPLER_SHIFT,
    Noise,
    StabilityWarning,
    contention_shift,
    process_band,
    sampler_shift,
    stability_warnings,
    time_noise,
)
from bench.comparison.stats import (
    BENJAMINI_HOCHBERG,
    CORRECTIONS,
    FASTER,
    IMPROVEMENT_WORDS,
    INSUFFICIENT,
    MIN_PROMPTS,
    MIN_SAMPLES,
    NO_CHANGE,
    NO_CORRECTION,
    NOT_COMPARABLE,
    NOT_JUDGED,
    NOT_MEASURED,
    REGRESSION_WORDS,
    SLOWER,
    TOO_NOISY,
    MemoryVerdict,
    PairedTest,
    QualityVerdict,
    SampleVerdict,
    adjust_p_values,
    judge_quality,
    paired_test,
    sample_verdict,
)
from bench.errors import UserInputError
from bench.sizing.units import MIB

SCHEMA_VERSION = 1

FALLBACK_QUALITY_MARGIN = 0.0

# What names a cell in the JSON: its id, and the axes it stands for.
CELL_KEYS = ("cell_id", "variant", "offload", "resolution")
NEWLY_FAILING = "newly failing"
NEWLY_WORKING = "newly working"
STILL_FAILING = "still failing"


@dataclass(frozen=True)
class Thresholds:
    """Every knob of a verdict, recorded in the JSON so a CI log says what was applied."""

    time_factor: float = 1.10
    memory_factor: float = 1.05
    memory_min_bytes: int = 32 * MIB
    energy_factor: float = 1.10
    alpha: float = 0.05
    min_samples: int = MIN_SAMPLES
    min_prompts: int = MIN_PROMPTS
    quality_margins: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_QUALITY_MARGINS))
    quality_metrics: tuple[str, ...] | None = None
    # Per memory counter (bench.comparison.memory names), 1 + its A/A noise between identical runs.
    memory_bands: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BANDS))
    # The absolute floor of a deterministic counter (torch allocated), instead of min_bytes.
    memory_exact_min_bytes: int = EXACT_MIN_BYTES
    # Per device type ("cpu", "cuda"), how far identical runs of a cell differ in time.
    time_bands: dict[str, float] = field(default_factory=lambda: dict(TIME_PROCESS_BANDS))
    # How the run's many quality tests are corrected for each other (stats.CORRECTIONS).
    quality_correction: str = BENJAMINI_HOCHBERG

    def __post_init__(self) -> None:
        if self.quality_correction not in CORRECTIONS:
            raise UserInputError(
                f"quality_correction {self.quality_correction!r}: expected one of "
                f"{', '.join(CORRECTIONS)}"
            )

    def margin(self, metric: str) -> float:
        return self.quality_margins.get(metric, FALLBACK_QUALITY_MARGIN)


@dataclass(frozen=True)
class DistributionComparison:
    """One distribution metric (FID, KID, CMMD) of a cell in both runs: one value per run and
    no test, so shown, never judged; each beside its same-distribution floor at its n
    (docs/scores.md), which moves with n as much as a real change would. Different n,
    reference n or feature space: `not comparable`."""

    metric: str
    verdict: str
    base_value: float | None
    cand_value: float | None
    base_floor: float | None
    cand_floor: float | None
    base_n: int | None
    cand_n: int | None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _distribution(base: CellData, cand: CellData) -> list[DistributionComparison]:
    out = []
    for metric in sorted(m for m in base.distribution if m in cand.distribution):
        b, c = base.distribution[metric], cand.distribution[metric]
        differs = [
            f"{key} {b.get(key)} vs {c.get(key)}"
            for key in ("n", "n_reference", "features")
            if b.get(key) != c.get(key)
        ]
        note = None
        verdict = NOT_JUDGED
        if differs:
            verdict = NOT_COMPARABLE
            note = "measured on different terms: " + ", ".join(differs)
        elif b.get("value") is None or c.get("value") is None:
            note = f"status base {b.get('status')}, candidate {c.get('status')}"
        out.append(
            DistributionComparison(
                metric,
                verdict,
                b.get("value"),
                c.get("value"),
                b.get("floor"),
                c.get("floor"),
                b.get("n"),
                c.get("n"),
                note,
            )
        )
    return out


@dataclass
class CellComparison:
    cell_id: str
    variant: str
    offload: str
    resolution: str
    base_status: str
    cand_status: str
    status_verdict: str
    base_error: str | None
    cand_error: str | None
    time: SampleVerdict | None = None
    energy: SampleVerdict | None = None
    memory: MemoryVerdict | None = None
    quality: list[QualityVerdict] = field(default_factory=list)
    warnings: list[tuple[str, StabilityWarning]] = field(default_factory=list)
    # Every counter and phase both runs measured; `memory` is the one that decides.
    memory_counters: list[MemoryVerdict] = field(default_factory=list)
    # (metric, higher is better, paired test) behind `quality`, kept to decide them per run.
    quality_tests: list[tuple[str, bool, PairedTest]] = field(default_factory=list, repr=False)
    distribution: list[DistributionComparison] = field(default_factory=list)
    speedup: str | None = None  # the cell's speed-up in words (load.speedup_words), if any

    def findings(self) -> list[tuple[str, str]]:
        """(aspect, verdict) of every aspect that changed in either direction."""
        out = []
        if self.status_verdict in (NEWLY_FAILING, NEWLY_WORKING):
            out.append(("status", self.status_verdict))
        for aspect, verdict in (("time", self.time), ("energy", self.energy)):
            if verdict is not None:
                out.append((aspect, verdict.verdict))
        if self.memory is not None:
            out.append(("memory", self.memory.verdict))
        out += [(f"quality:{q.metric}", q.verdict) for q in self.quality]
        return out

    def _aspects(self, words: set[str]) -> list[str]:
        return [aspect for aspect, verdict in self.findings() if verdict in words]

    @property
    def regressions(self) -> list[str]:
        return self._aspects({*REGRESSION_WORDS, NEWLY_FAILING})

    @property
    def improvements(self) -> list[str]:
        return self._aspects({*IMPROVEMENT_WORDS, NEWLY_WORKING})

    @property
    def too_noisy(self) -> list[str]:
        """Aspects whose measurement was noisier than the threshold: not judged either way."""
        return self._aspects({TOO_NOISY})

    def as_dict(self) -> dict[str, Any]:
        return {
            **{key: getattr(self, key) for key in CELL_KEYS},
            # Only a speed-up cell has one, as in the manifest: other cells' JSON is as before.
            **({"speedup": self.speedup} if self.speedup is not None else {}),
            "status": {
                "base": self.base_status,
                "cand": self.cand_status,
                "verdict": self.status_verdict,
                "base_error": self.base_error,
                "cand_error": self.cand_error,
            },
            "time": self.time.as_dict() if self.time else None,
            "energy": self.energy.as_dict() if self.energy else None,
            "memory": self.memory.as_dict() if self.memory else None,
            "memory_counters": [m.as_dict() for m in self.memory_counters],
            "quality": [q.as_dict() for q in self.quality],
            "distribution": [d.as_dict() for d in self.distribution],
            "warnings": [{"run": run, **w.as_dict()} for run, w in self.warnings],
            "regressions": self.regressions,
            "improvements": self.improvements,
            "too_noisy": self.too_noisy,
        }


@dataclass
class Comparison:
    base: ComparedRun
    cand: ComparedRun
    thresholds: Thresholds
    differences: list[Difference]
    versions: list[Difference]
    cells: list[CellComparison]
    only_in_base: list[str]
    only_in_cand: list[str]
    forced: bool = False

    @property
    def comparable(self) -> bool:
        return not self.differences

    @property
    def regressions(self) -> list[tuple[str, str]]:
        return [(c.cell_id, aspect) for c in self.cells for aspect in c.regressions]

    @property
    def improvements(self) -> list[tuple[str, str]]:
        return [(c.cell_id, aspect) for c in self.cells for aspect in c.improvements]

    @property
    def too_noisy(self) -> list[tuple[str, str]]:
        return [(c.cell_id, aspect) for c in self.cells for aspect in c.too_noisy]

    @property
    def exit_code(self) -> int:
        """0: no regression; 1: a regression; 2: not comparable (and not forced)."""
        if not self.comparable and not self.forced:
            return 2
        return 1 if self.regressions else 0

    def as_dict(self) -> dict[str, Any]:
        thresholds = dict(self.thresholds.__dict__)
        thresholds["quality_metrics"] = (
            list(self.thresholds.quality_metrics) if self.thresholds.quality_metrics else None
        )
        thresholds["memory_bands"] = dict(self.thresholds.memory_bands)
        return {
            "schema": SCHEMA_VERSION,
            "kind": "comparison",
            "base": _run_info(self.base),
            "cand": _run_info(self.cand),
            "comparable": self.comparable,
            "forced": self.forced,
            "differences": [d.as_dict() for d in self.differences],
            "versions": [d.as_dict() for d in self.versions],
            "thresholds": thresholds,
            "cells": [c.as_dict() for c in self.cells],
            "only_in_base": self.only_in_base,
            "only_in_cand": self.only_in_cand,
            "regressions": [{"cell_id": c, "aspect": a} for c, a in self.regressions],
            "improvements": [{"cell_id": c, "aspect": a} for c, a in self.improvements],
            "too_noisy": [{"cell_id": c, "aspect": a} for c, a in self.too_noisy],
            "exit_code": self.exit_code,
        }


def _run_info(run: ComparedRun) -> dict[str, Any]:
    env = run.manifest.get("environment") or {}
    return {
        "run_dir": str(run.run_dir),
        "run_id": run.run_id,
        "config_hash": run.manifest.get("config_hash"),
        "created_at": run.manifest.get("created_at"),
        "finished_at": run.manifest.get("finished_at"),
        "packages": env.get("packages") or {},
        "gpus": [g.get("name") for g in env.get("gpus") or []],
    }


def _status_verdict(base: str, cand: str) -> str:
    if base == "ok" and cand != "ok":
        return NEWLY_FAILING
    if base != "ok" and cand == "ok":
        return NEWLY_WORKING
    if base != "ok" and cand != "ok":
        return STILL_FAILING
    return NO_CHANGE


def _memory(base: CellData, cand: CellData, t: Thresholds) -> list[MemoryVerdict]:
    """Per counter and phase, each against its own noise (bench.comparison.memory)."""
    return counter_verdicts(
        base.image_memory,
        cand.image_memory,
        base.cell_memory,
        cand.cell_memory,
        t.memory_factor,
        t.memory_min_bytes,
        t.alpha,
        t.min_samples,
        t.memory_bands,
        t.memory_exact_min_bytes,
    )


def _unequal_load(base: CellData, cand: CellData) -> str | None:
    """A sentence when the machine was measurably busier in one run than in the other."""
    shares = contention_shift(base.others_share, cand.others_share)
    if shares is not None and max(shares) > MAX_OTHERS_SHARE:
        return (
            f"other processes used {shares[0]:.0%} of the processors during base's images and "
            f"{shares[1]:.0%} during candidate's (more than {MAX_OTHERS_SHARE:.0%}): the machine "
            f"was not idle, so its times are not comparable"
        )
    shift = sampler_shift(base.sampler_hz, cand.sampler_hz)
    if shift is None or shift <= MAX_SAMPLER_SHIFT:
        return None
    rb, rc = (float(np.median(x)) for x in (base.sampler_hz, cand.sampler_hz))
    return (
        f"the memory sampler ran at {rb:.0f}/s in base and {rc:.0f}/s in candidate "
        f"(×{shift:.3f} apart, more than ×{MAX_SAMPLER_SHIFT:g}): the machine was busier in "
        f"one run, so their times are not comparable"
    )


def _against_process_band(verdict: SampleVerdict, band: float, factor: float) -> SampleVerdict:
    """Identical processes on this device type differ by up to `band` (TIME_PROCESS_BANDS):
    where that is wider than the factor, only a change that clears the band is called, and
    anything smaller is too noisy to judge, as for a memory counter whose band is wider."""
    if band <= factor or verdict.verdict not in (NO_CHANGE, SLOWER, FASTER):
        return verdict
    ratio = verdict.ratio
    if verdict.verdict != NO_CHANGE and ratio is not None and max(ratio, 1 / ratio) > band:
        note = f"beyond ×{band:g}, how far identical runs of a cell differ on this device type"
        return replace(verdict, note=f"{verdict.note}; {note}" if verdict.note else note)
    return replace(
        verdict,
        verdict=TOO_NOISY,
        note=f"identical runs of a cell differ by up to ×{band:g} on this device type (more "
        f"than the factor ×{factor:g}; --time-band to set it from benchmarks/compare_aa.py)",
    )


def _noise_band(base: Noise, cand: Noise) -> tuple[float | None, str]:
    """The wider of the two runs' spreads, and what each run showed (for the note)."""
    bands = [n.band for n in (base, cand) if n.band is not None]
    text = f"base {base.describe()}; candidate {cand.describe()}"
    return (max(bands) if bands else None), text


def _identity_note(base: PromptScores, cand: PromptScores) -> str | None:
    """Prompts identical to the reference in one run only, in words.

    Identity is no verdict of its own: a metric with a value at identity (SSIM 1, LPIPS 0) has
    that value in the paired test like any other; PSNR has none (+inf), so such a prompt is not
    among the PSNR pairs and its change is judged by the metrics that have one.
    """
    lost = sorted(p for p in base.identical if p in cand.values)
    gained = sorted(p for p in cand.identical if p in base.values)
    parts = []
    if lost:
        parts.append(f"identical to the reference in base only: {', '.join(lost)}")
    if gained:
        parts.append(f"identical to the reference in candidate only: {', '.join(gained)}")
    if not parts:
        return None
    return "; ".join(parts) + " (no finite value there: not among the pairs)"


def _quality_tests(
    base: CellData, cand: CellData, t: Thresholds
) -> list[tuple[str, bool, PairedTest]]:
    """(metric, higher is better, paired test) of every metric scored in both runs."""
    metrics = [m for m in base.scores if m in cand.scores]
    if t.quality_metrics is not None:
        metrics = [m for m in metrics if m in t.quality_metrics]
    out = []
    for metric in sorted(metrics):
        b, c = base.scores[metric], cand.scores[metric]
        test = paired_test(b.values, c.values, t.min_prompts)
        identity = _identity_note(b, c)
        if identity:
            test = replace(test, note="; ".join(n for n in (test.note, identity) if n))
        out.append((metric, b.higher_is_better, test))
    return out


def _judge_run_quality(cells: list[CellComparison], t: Thresholds) -> None:
    """Decide every cell's quality verdicts together: the run's tests are many (cells x
    metrics), so their p-values are corrected as one family (`Thresholds.quality_correction`)
    before any is called a change."""
    p_values = [
        test.p_value
        for cell in cells
        for _metric, _higher, test in cell.quality_tests
        if test.p_value is not None
    ]
    adjusted = iter(adjust_p_values(p_values, t.quality_correction).tolist())
    correction = None
    if t.quality_correction != NO_CORRECTION:
        correction = f"{t.quality_correction} over {len(p_values)} quality test(s)"
    for cell in cells:
        verdicts = []
        for metric, higher, test in cell.quality_tests:
            p_adjusted = next(adjusted) if test.p_value is not None else None
            if correction is None:
                p_adjusted = None
            verdicts.append(
                judge_quality(
                    test,
                    metric,
                    higher,
                    t.margin(metric),
                    t.alpha,
                    p_adjusted,
                    correction if p_adjusted is not None else None,
                )
            )
        cell.quality = verdicts


Samples = tuple[list[float], list[list[float]] | None]  # per-image values, and their steps


def _samples(
    base: Samples, cand: Samples, factor: float, t: Thresholds, unequal: str | None
) -> SampleVerdict:
    """`sample_verdict` of one per-image measurement (time, energy), against the wider of the
    two runs' own spreads."""
    band, described = _noise_band(time_noise(*base), time_noise(*cand))
    return sample_verdict(
        base[0],
        cand[0],
        factor,
        t.alpha,
        t.min_samples,
        noise_band=band,
        noise_note=described,
        unequal=unequal,
    )


def compare_cells(base: CellData, cand: CellData, t: Thresholds) -> CellComparison:
    """Every aspect of one cell present in both runs."""
    result = CellComparison(
        cell_id=base.cell_id,
        variant=base.variant,
        offload=base.offload,
        resolution=base.resolution,
        base_status=base.status,
        cand_status=cand.status,
        status_verdict=_status_verdict(base.status, cand.status),
        base_error=base.error,
        cand_error=cand.error,
        speedup=cand.speedup or base.speedup,
    )
    if base.status != "ok" or cand.status != "ok":
        # A failed side has no samples worth testing; the status verdict says it all.
        return result
    unequal = _unequal_load(base, cand)
    result.time = _against_process_band(
        _samples((base.wall_s, base.step_s), (cand.wall_s, cand.step_s), t.time_factor, t, unequal),
        process_band(base.device or cand.device, t.time_bands),
        t.time_factor,
    )
    if base.energy_j is not None and cand.energy_j is not None:
        result.energy = _samples(
            (base.energy_j, None), (cand.energy_j, None), t.energy_factor, t, unequal
        )
    else:
        result.energy = SampleVerdict(
            NOT_MEASURED,
            None,
            None,
            None,
            None,
            len(base.energy_j or []),
            len(cand.energy_j or []),
            "energy counter not available in both runs",
        )
    result.memory_counters = _memory(base, cand, t)
    result.memory = combined_verdict(result.memory_counters)
    result.distribution = _distribution(base, cand)
    result.quality_tests = _quality_tests(base, cand, t)
    # Each test alone here; compare_loaded decides them again as one family per run.
    result.quality = [
        judge_quality(test, metric, higher, t.margin(metric), t.alpha)
        for metric, higher, test in result.quality_tests
    ]
    for run, data in (("base", base), ("cand", cand)):
        result.warnings += [
            (run, w) for w in stability_warnings(data.wall_s, "wall time", steps=data.step_s)
        ]
        if result.energy.verdict != NOT_MEASURED and data.energy_j is not None:
            result.warnings += [(run, w) for w in stability_warnings(data.energy_j, "energy")]
    return result


def compare_loaded(
    base: ComparedRun, cand: ComparedRun, thresholds: Thresholds | None = None, force: bool = False
) -> Comparison:
    t = thresholds or Thresholds()
    cells = [
        compare_cells(base.cells[cell_id], cand.cells[cell_id], t)
        for cell_id in base.cells
        if cell_id in cand.cells
    ]
    _judge_run_quality(cells, t)
    return Comparison(
        base=base,
        cand=cand,
        thresholds=t,
        differences=blocking_differences(base.manifest, cand.manifest),
        versions=version_changes(base.manifest, cand.manifest),
        cells=cells,
        only_in_base=[c for c in base.cells if c not in cand.cells],
        only_in_cand=[c for c in cand.cells if c not in base.cells],
        forced=force,
    )


def compare_runs(
    base_dir: Path,
    cand_dir: Path,
    thresholds: Thresholds | None = None,
    force: bool = False,
) -> Comparison:
    """Compare two run folders; raises UserInputError (one line) when either is not one."""
    return compare_loaded(load_run(Path(base_dir)), load_run(Path(cand_dir)), thresholds, force)


__all__ = [
    "INSUFFICIENT",
    "NEWLY_FAILING",
    "NEWLY_WORKING",
    "NO_CHANGE",
    "STILL_FAILING",
    "TOO_NOISY",
    "CellComparison",
    "Comparison",
    "Thresholds",
    "compare_runs",
]
