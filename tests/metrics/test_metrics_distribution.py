"""FID, KID and CMMD from features, against closed forms and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from bench.metrics import METRICS
from bench.metrics.distribution import (
    FID,
    FidNumericalError,
    cmmd_floor,
    cmmd_from_embeddings,
    fid_floor,
    fid_from_features,
    kid_from_features,
)


def test_fid_matches_closed_form_for_gaussians() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, size=(4000, 2))
    y = rng.normal(0.0, 1.0, size=(4000, 2)) * [2.0, 1.0] + [3.0, 0.0]
    # Diagonal covariances: FID = |mu_x - mu_y|^2 + sum (s_x + s_y - 2 sqrt(s_x s_y)).
    mu = x.mean(0) - y.mean(0)
    vx, vy = x.var(0, ddof=1), y.var(0, ddof=1)
    expected = mu @ mu + np.sum(vx + vy - 2 * np.sqrt(vx * vy))
    assert fid_from_features(x, y) == pytest.approx(expected, rel=0.02)
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same, same_std = kid_from_features(a, b, subsets=20, subset_size=100)
    shifted, _ = kid_from_features(a, b + 1.0, subsets=20, subset_size=100)
    assert same_std is not None and same_std > 0  # both sets larger than a subset
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 10 * abs(same)


def test_kid_unbiased_estimator_by_hand() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    value, std = kid_from_features(x, y, subsets=3, subset_size=5)
    k = lambda a, b: (a @ b.T / 3 + 1) ** 3  # noqa: E731
    m = 5
    kxx, kyy = k(x, x), k(y, y)
    expected = (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )
    assert value == pytest.approx(expected)  # the whole set: computed once
    assert std is None  # every "subset" would be the whole set reordered: no spread to report


def test_cmmd_by_hand() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4))
    y = rng.normal(size=(7, 4)) + 0.5
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)

    def mean_k(a: np.ndarray, b: np.ndarray) -> float:
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return float(np.exp(-d / (2 * 10.0**2)).mean())

    expected = 1000 * (mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y))
    assert cmmd_from_embeddings(x, y) == pytest.approx(expected)
    assert cmmd_from_embeddings(x, x) == pytest.approx(0.0, abs=1e-9)
    assert expected > 0


def test_too_few_samples_is_a_status_with_n_and_minimum() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(8, 16)), rng.normal(size=(8, 16))
    for name in ("fid", "kid", "cmmd"):
        result = METRICS[name].compute(x, y)
        assert result.value is None and result.status == "too_few_samples"
        assert result.n == 8 and result.minimum >= METRICS[name].minimum
        assert "8" in result.note
    # FID also needs more images than feature dimensions.
    assert FID.minimum_for(16) == FID.minimum and FID.minimum_for(768) == 769
    big_x, big_y = rng.normal(size=(60, 16)), rng.normal(size=(60, 16))
    assert METRICS["fid"].compute(big_x, big_y).status == "ok"
    wide = METRICS["fid"].compute(rng.normal(size=(60, 100)), rng.normal(size=(60, 100)))
    assert (wide.status, wide.minimum) == ("too_few_samples", 101)
    ok = METRICS["kid"].compute(rng.normal(size=(12, 4)), rng.normal(size=(12, 4)))
    assert ok.status == "ok" and "std" not in ok.extra and "subset size" in ok.note


def test_kid_std_only_where_subsets_differ() -> None:
    rng = np.random.default_rng(5)
    small, large = rng.normal(size=(30, 4)), rng.normal(size=(60, 4))
    assert kid_from_features(large, large + 0.1, subsets=10, subset_size=20)[1] is not None
    # One side no larger than the subset: its subsets are all of it; the mean stands, no std.
    mean, std = kid_from_features(small, large, subsets=10, subset_size=30)
    assert std is None and np.isfinite(mean)


@pytest.mark.parametrize("n", [10, 40])
def test_cmmd_floor_is_the_same_distribution_expectation(n: int) -> None:
    """The closed form against the mean CMMD of 300 same-distribution draws."""
    rng = np.random.default_rng(n)

    def unit(k: int) -> np.ndarray:
        v = rng.normal(size=(k, 32)) + 0.3
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    reference = unit(150)
    drawn = np.mean([cmmd_from_embeddings(unit(n), unit(150)) for _ in range(300)])
    assert cmmd_floor(reference, n) == pytest.approx(drawn, rel=0.05)
    result = METRICS["cmmd"].compute(unit(n), reference)
    assert result.extra["floor"] == pytest.approx(cmmd_floor(reference, n))


def test_fid_floor_is_the_same_distribution_mean() -> None:
    """FID of two Gaussian samples of one distribution averages to the floor, which falls
    with n (FID's bias): 200 draws against the floor's own 50."""
    rng = np.random.default_rng(6)
    root = rng.normal(size=(12, 12)) / np.sqrt(12)

    def draw(k: int) -> np.ndarray:
        return rng.normal(size=(k, 12)) @ root.T

    reference = draw(200)
    floors = []
    for n in (50, 150):
        drawn = np.mean([fid_from_features(draw(n), draw(200)) for _ in range(200)])
        floors.append(fid_floor(reference, n, draws=50))
        assert floors[-1] == pytest.approx(drawn, rel=0.1)
    assert floors[0] > floors[1] > 0


def test_fid_imaginary_square_root_is_an_error_not_a_number() -> None:
    """pytorch-fid's check on real ill-conditioned features (near-duplicate and scaled
    columns): where sqrtm's diagonal has an imaginary part above 1e-3 there is no FID (an
    error, recorded as `numerical_error`); below it the real part is the answer."""
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        x, y = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
        x[:, 1] = x[:, 0] * (1 + 1e-9)
        y[:, 2], y[:, 4] = -y[:, 3], y[:, 5] * 1e6
        root = linalg.sqrtm(np.cov(x, rowvar=False) @ np.cov(y, rowvar=False))
        imaginary = np.abs(np.diagonal(root).imag).max() if np.iscomplexobj(root) else 0.0
        if imaginary > 1e-3:
            with pytest.raises(FidNumericalError, match="imaginary"):
                fid_from_features(x, y)
            result = METRICS["fid"].compute(x, y)
            assert (result.value, result.status) == (None, "numerical_error")
            seen.add("error")
        else:
            assert np.isfinite(fid_from_features(x, y))
            seen.add("imaginary below tolerance" if imaginary > 0 else "real")
    assert {"error", "imaginary below tolerance"} <= seen
