"""Monte Carlo measurement of the verdicts' false-positive rate and power.

The tests assert on these numbers and docs/compare.md quotes them; print the table with
`.venv/bin/python -m tests.compare.simulate`. Every scenario has its own seed, so the numbers
are reproducible to the last digit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from bench.comparison.stability import relative_mad
from bench.comparison.stats import TOO_NOISY, classify, quality_verdict, ratio_and_p
from tests.compare.rundir import lognormal_times


@dataclass(frozen=True)
class Rates:
    """Fractions of draws per verdict, and of draws whose test alone was significant."""

    verdicts: dict[str, float]
    significant: float
    draws: int

    def of(self, verdict: str) -> float:
        return self.verdicts.get(verdict, 0.0)


def time_rates(
    n: int,
    cv: float,
    slowdown: float,
    factor: float,
    draws: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    stragglers: float = 0.0,
) -> Rates:
    """Base and candidate times lognormal with the same CV; the candidate's median x slowdown;
    each image independently a 1.5x straggler with probability `stragglers`. The verdict is
    the one `bench compare` gives, noise band included (1 + the larger relative MAD of the
    two runs' per-image times; the simulated images have no steps)."""
    base, cand = time_draws(n, cv, slowdown, draws, seed, stragglers)
    ratio, p_value = ratio_and_p(base, cand)
    band = 1.0 + np.fmax(relative_mad(base), relative_mad(cand))
    counts = Counter(classify(ratio, p_value, factor, alpha, noise_band=band).tolist())
    significant = float(np.mean(p_value < alpha))
    return Rates({k: v / draws for k, v in counts.items()}, significant, draws)


def time_draws(
    n: int, cv: float, slowdown: float, draws: int, seed: int, stragglers: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """`draws` x `n` arrays of base and candidate image times."""
    rng = np.random.default_rng(seed)
    base = lognormal_times(rng, draws * n, 2.0, cv).reshape(draws, n)
    cand = lognormal_times(rng, draws * n, 2.0 * slowdown, cv).reshape(draws, n)
    for sample in (base, cand):
        sample *= np.where(rng.random(sample.shape) < stragglers, 1.5, 1.0)
    return base, cand


def quality_rates(
    n: int,
    sd: float,
    shift: float,
    margin: float,
    draws: int = 300,
    seed: int = 0,
) -> Rates:
    """Per-prompt PSNR: a prompt effect (35 ± 3 dB) shared by both runs, plus independent noise
    so that the per-prompt difference has standard deviation `sd`; the candidate shifted by
    `shift` dB. `significant` counts draws whose 95% interval alone excluded 0."""
    rng = np.random.default_rng(seed)
    counts: Counter[str] = Counter()
    excluded = 0
    for _ in range(draws):
        prompt = rng.normal(35.0, 3.0, n)
        base = prompt + rng.normal(0.0, sd / np.sqrt(2), n)
        cand = prompt + rng.normal(0.0, sd / np.sqrt(2), n) + shift
        verdict = quality_verdict(
            {f"p{i}": v for i, v in enumerate(base)},
            {f"p{i}": v for i, v in enumerate(cand)},
            "psnr",
            True,
            margin,
        )
        counts[verdict.verdict] += 1
        assert verdict.ci_low is not None and verdict.ci_high is not None
        excluded += verdict.ci_high < 0 or verdict.ci_low > 0
    return Rates({k: v / draws for k, v in counts.items()}, excluded / draws, draws)


# name: (n, cv, slowdown, factor, seed[, straggler probability])
TIME_SCENARIOS: dict[str, tuple[float, ...]] = {
    "null n=10 cv=5% factor=1.10": (10, 0.05, 1.00, 1.10, 1),
    "null n=10 cv=5% 10% stragglers": (10, 0.05, 1.00, 1.10, 9, 0.10),
    "null n=20 cv=3% factor=1.05": (20, 0.03, 1.00, 1.05, 2),
    "null n=5 cv=10% factor=1.10": (5, 0.10, 1.00, 1.10, 3),
    "+10% n=20 cv=3% factor=1.05": (20, 0.03, 1.10, 1.05, 4),
    "+10% n=10 cv=5% factor=1.05": (10, 0.05, 1.10, 1.05, 5),
    "+10% n=20 cv=3% factor=1.10": (20, 0.03, 1.10, 1.10, 6),
    "+15% n=10 cv=5% factor=1.10": (10, 0.05, 1.15, 1.10, 10),
    "+20% n=10 cv=5% factor=1.10": (10, 0.05, 1.20, 1.10, 7),
    "-10% n=20 cv=3% factor=1.05": (20, 0.03, 1 / 1.10, 1.05, 8),
}


def time_scenario(name: str) -> Rates:
    n, cv, slowdown, factor, seed, *rest = TIME_SCENARIOS[name]
    stragglers = rest[0] if rest else 0.0
    return time_rates(int(n), cv, slowdown, factor, seed=int(seed), stragglers=stragglers)


# name: (n, sd of the per-prompt difference, shift, margin, seed[, draws])
QUALITY_SCENARIOS: dict[str, tuple[float, ...]] = {
    "null n=10 sd=0.5 dB margin=0": (10, 0.5, 0.0, 0.0, 11, 600),
    "null n=10 sd=1 dB margin=0.5": (10, 1.0, 0.0, 0.5, 12, 600),
    "-1 dB n=10 sd=1 dB margin=0.5": (10, 1.0, -1.0, 0.5, 13),
    "-1 dB n=20 sd=1 dB margin=0.5": (20, 1.0, -1.0, 0.5, 14),
}


def quality_scenario(name: str) -> Rates:
    n, sd, shift, margin, seed, *rest = QUALITY_SCENARIOS[name]
    draws = int(rest[0]) if rest else 300
    return quality_rates(int(n), sd, shift, margin, draws=draws, seed=int(seed))


def main() -> None:
    print("time (Mann-Whitney U + median ratio + noise band), 2000 draws each")
    for name in TIME_SCENARIOS:
        r = time_scenario(name)
        print(
            f"  {name:32s} slower {r.of('slower'):.3f}  faster {r.of('faster'):.3f}  "
            f"too noisy {r.of(TOO_NOISY):.3f}  test p<0.05 {r.significant:.3f}"
        )
    print("quality (paired t/bootstrap-t interval + sign-flip test + margin), 300-600 draws each")
    for name in QUALITY_SCENARIOS:
        r = quality_scenario(name)
        print(
            f"  {name:32s} worse {r.of('worse'):.3f}  better {r.of('better'):.3f}  "
            f"interval alone excludes 0 {r.significant:.3f}"
        )


if __name__ == "__main__":
    main()
