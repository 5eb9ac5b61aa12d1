"""FID, KID and CMMD from features, against closed forms and hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics.distribution import (
    MIN_SAMPLES,
    cmmd_from_embeddings,
    distribution_metric,
    fid_from_features,
    fid_minimum,
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
    assert value == pytest.approx(expected)  # the whole set each time: every subset agrees
    assert std == pytest.approx(0.0, abs=1e-12)


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
        result = distribution_metric(name, x, y)
        assert result.value is None and result.status == "too_few_samples"
        assert result.n == 8 and result.minimum >= MIN_SAMPLES[name]
        assert "8" in result.note
    # FID also needs more images than feature dimensions.
    assert fid_minimum(16) == MIN_SAMPLES["fid"] and fid_minimum(768) == 769
    big_x, big_y = rng.normal(size=(60, 16)), rng.normal(size=(60, 16))
    assert distribution_metric("fid", big_x, big_y).status == "ok"
    wide = distribution_metric("fid", rng.normal(size=(60, 100)), rng.normal(size=(60, 100)))
    assert (wide.status, wide.minimum) == ("too_few_samples", 101)
    ok = distribution_metric("kid", rng.normal(size=(12, 4)), rng.normal(size=(12, 4)))
    assert ok.status == "ok" and "std" in ok.extra
