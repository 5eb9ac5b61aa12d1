"""How often a comparison with no quality change calls something `worse`: per test and per run.

A run of `bench compare` makes one quality test per (cell, metric) scored in both runs, and any
`worse` fails the job. Each test alone is called at alpha 0.05 (sign-flip p, the 95% interval
and the margin), so the chance of at least one false `worse` grows with the number of tests.
This script draws A/A comparisons (no change anywhere) of realistic sizes and judges each with
the verdict code of `bench compare` (`bench.comparison.stats.paired_test` and `judge_quality`,
the run's p-values adjusted by `adjust_p_values`), before (each test alone, the old rule) and
after (Benjamini-Hochberg over the run's tests, the default).

Noise model: per cell and prompt, the candidate-minus-base difference of each metric is normal
with sd 1 (in units of the metric's noise), the metrics of one cell correlated (rho, default
0.7: PSNR, SSIM and LPIPS of the same images move together), cells independent. `margin` is
in the same units: 0.5 is PSNR's default margin at a per-prompt sd of 1 dB (docs/compare.md's
scenario); 0 is the worst case (no margin at all).

    .venv/bin/python benchmarks/quality_false_worse.py [--runs 400] [--rho 0.7] [--seed 27]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.comparison.stats import (
    BENJAMINI_HOCHBERG,
    NO_CORRECTION,
    WORSE,
    adjust_p_values,
    judge_quality,
    paired_test,
)

ALPHA = 0.05
# (cells, metrics per cell, prompts, margin): a single cell; the demo's 5 quantized cells with
# PSNR/SSIM/MS-SSIM; a GPU sweep of 10-20 cells with LPIPS and CLIP too; 40 cells.
SCENARIOS = (
    (1, 3, 10, 0.5),
    (5, 3, 10, 0.5),
    (10, 4, 10, 0.5),
    (20, 5, 10, 0.5),
    (20, 5, 20, 0.5),
    (40, 5, 10, 0.5),
    (20, 5, 10, 0.0),
)


# What the correction costs where a change is real: (cells, metrics, prompts, margin, cells
# that lost `shift` noise-sd on every metric, shift).
POWER_SCENARIOS = (
    (20, 5, 10, 0.5, 1, -1.0),
    (20, 5, 10, 0.5, 5, -1.0),
    (20, 5, 20, 0.5, 1, -1.0),
    (20, 5, 10, 0.5, 1, -1.5),
)


def draw_run(
    rng: np.random.Generator,
    cells: int,
    metrics: int,
    prompts: int,
    rho: float,
    changed: int = 0,
    shift: float = 0.0,
) -> list[tuple[dict[str, float], dict[str, float]]]:
    """(base, candidate) per-prompt values of every (cell, metric) test of one run; the first
    `changed` cells' candidates shifted by `shift` (0: an A/A run)."""
    shared = rng.standard_normal((cells, 1, prompts))
    own = rng.standard_normal((cells, metrics, prompts))
    diffs = np.sqrt(rho) * shared + np.sqrt(1.0 - rho) * own
    diffs[:changed] += shift
    base = rng.normal(30.0, 3.0, (cells, metrics, prompts))  # the prompts' own level
    names = [f"p{i}" for i in range(prompts)]
    return [
        (dict(zip(names, b, strict=True)), dict(zip(names, b + d, strict=True)))
        for b, d in zip(base.reshape(-1, prompts), diffs.reshape(-1, prompts), strict=True)
    ]


def worse_flags(
    tests: list[tuple[dict[str, float], dict[str, float]]], margin: float
) -> dict[str, list[bool]]:
    """Per test of one run, whether it was called `worse`: each alone, and corrected."""
    paired = [paired_test(base, cand) for base, cand in tests]
    out = {}
    for correction in (NO_CORRECTION, BENJAMINI_HOCHBERG):
        adjusted = adjust_p_values([t.p_value for t in paired], correction)
        out[correction] = [
            judge_quality(
                test,
                "metric",
                True,
                margin,
                ALPHA,
                None if correction == NO_CORRECTION else float(q),
            ).verdict
            == WORSE
            for test, q in zip(paired, adjusted, strict=True)
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="A/A runs per scenario")
    parser.add_argument("--rho", type=float, default=0.7, help="correlation of a cell's metrics")
    parser.add_argument("--seed", type=int, default=27)
    args = parser.parse_args()
    start = time.perf_counter()
    print(
        f"A/A runs with no change, {args.runs} runs per row, metrics of a cell correlated "
        f"rho={args.rho}; alpha {ALPHA}. 'run' = share of runs with at least one false worse "
        f"(standard error <= {0.5 / np.sqrt(args.runs):.3f}); 'test' = share of tests."
    )
    print(
        "cells  metrics  prompts  margin  tests/run   each alone: run   test"
        "     corrected (BH): run   test"
    )
    for k, (cells, metrics, prompts, margin) in enumerate(SCENARIOS):
        rng = np.random.default_rng([args.seed, k])
        counts: dict[str, list[int]] = {NO_CORRECTION: [], BENJAMINI_HOCHBERG: []}
        for _ in range(args.runs):
            run = draw_run(rng, cells, metrics, prompts, args.rho)
            for key, flags in worse_flags(run, margin).items():
                counts[key].append(sum(flags))
        tests = cells * metrics
        row = f"{cells:5d}  {metrics:7d}  {prompts:7d}  {margin:6g}  {tests:9d}"
        for key in (NO_CORRECTION, BENJAMINI_HOCHBERG):
            worse = np.asarray(counts[key])
            row += f"   {np.mean(worse > 0):15.3f}  {worse.sum() / (tests * args.runs):.4f}"
        print(row, flush=True)
    print(
        "\nA real loss in some cells: share of runs that call a changed cell worse (caught), and "
        "that call an unchanged one worse (false)"
    )
    print(
        "cells  metrics  prompts  margin  changed  shift   each alone: caught  false"
        "   corrected (BH): caught  false"
    )
    for k, (cells, metrics, prompts, margin, changed, shift) in enumerate(POWER_SCENARIOS):
        rng = np.random.default_rng([args.seed, 100 + k])
        caught = {NO_CORRECTION: 0, BENJAMINI_HOCHBERG: 0}
        false = dict(caught)
        for _ in range(args.runs):
            run = draw_run(rng, cells, metrics, prompts, args.rho, changed, shift)
            for key, flags in worse_flags(run, margin).items():
                caught[key] += any(flags[: changed * metrics])
                false[key] += any(flags[changed * metrics :])
        row = f"{cells:5d}  {metrics:7d}  {prompts:7d}  {margin:6g}  {changed:7d}  {shift:5g}"
        for key in (NO_CORRECTION, BENJAMINI_HOCHBERG):
            row += f"   {caught[key] / args.runs:18.3f}  {false[key] / args.runs:.3f}"
        print(row, flush=True)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
