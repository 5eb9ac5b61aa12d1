"""Distribution distances between a cell's images and the full-precision images: FID, KID, CMMD.

These compare image *sets*, not pairs, so they need many images before they mean anything: FID
is biased at small n and its covariance is singular below the feature dimension. Where n is too
small the result says so (`too_few_samples` with n and the minimum) instead of a bare number.
The metrics take features, one row per image (bench.metrics.features: the CLIP image tower by
default, or torchmetrics' Inception from a local weights file when configured); CMMD is defined
over CLIP embeddings and always uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.metrics.base import DistributionMetric, DistributionResult

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0
RANDOM_STATE = 20240601
# pytorch-fid's tolerance on the imaginary part of sqrtm's diagonal: above it the covariance
# product is too ill-conditioned for its square root to mean anything.
FID_IMAGINARY_TOLERANCE = 1e-3
# Same-distribution draws behind FID's floor (each one sqrtm of a feature-sized matrix).
FID_FLOOR_DRAWS = 3


class FidNumericalError(Exception):
    """sqrtm of the covariance product has a real imaginary part: no FID (the message says)."""


def fid_from_features(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to two feature sets (rows are samples).

    Like pytorch-fid, the square root of the covariance product may come back complex from
    rounding; an imaginary part on its diagonal above FID_IMAGINARY_TOLERANCE is an error
    (FidNumericalError), below it the real part is the answer.
    """
    from scipy import linalg  # deferred: scipy (METRICS, and so `bench score --help`, loads this)

    x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mu_x, mu_y = x64.mean(axis=0), y64.mean(axis=0)
    cov_x = np.atleast_2d(np.cov(x64, rowvar=False))
    cov_y = np.atleast_2d(np.cov(y64, rowvar=False))
    covmean = linalg.sqrtm(cov_x @ cov_y)
    if not np.isfinite(covmean).all():
        offset = np.eye(cov_x.shape[0]) * 1e-6
        covmean = linalg.sqrtm((cov_x + offset) @ (cov_y + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag)
        if not np.all(imaginary <= FID_IMAGINARY_TOLERANCE):
            raise FidNumericalError(
                f"sqrtm of the covariance product has an imaginary part up to "
                f"{float(imaginary.max()):.3g} on its diagonal (tolerance "
                f"{FID_IMAGINARY_TOLERANCE:g}, as pytorch-fid): the covariances are too "
                f"ill-conditioned for a Frechet distance"
            )
        covmean = covmean.real
    diff = mu_x - mu_y
    value = diff @ diff + np.trace(cov_x) + np.trace(cov_y) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def fid_floor(
    y: np.ndarray,
    n: int,
    draws: int = FID_FLOOR_DRAWS,
    random_state: int = RANDOM_STATE,
) -> float:
    """FID between two sets of `n` and len(y) samples of one distribution: the value "no
    difference" has at these sizes (FID is biased upward, about as 1/n).

    FID models the features as a Gaussian, so the draws come from the Gaussian fitted to the
    reference features `y`, and the floor is their mean FID over `draws` pairs.
    """
    y64 = np.asarray(y, dtype=np.float64)
    mean = y64.mean(axis=0)
    # A square root of the (positive semi-definite) covariance, from its eigendecomposition.
    eigenvalues, vectors = np.linalg.eigh(np.atleast_2d(np.cov(y64, rowvar=False)))
    root = vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
    rng = np.random.default_rng(random_state)

    def sample(size: int) -> np.ndarray:
        return mean + rng.standard_normal((size, len(mean))) @ root.T

    return float(np.mean([fid_from_features(sample(n), sample(len(y64))) for _ in range(draws)]))


def kid_from_features(
    x: np.ndarray,
    y: np.ndarray,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    random_state: int = RANDOM_STATE,
) -> tuple[float, float | None]:
    """KID: unbiased MMD^2 with kernel (x.y/d + 1)^3, mean and std over random subsets.

    Each subset's MMD^2 is torchmetrics' `poly_mmd` (its KID estimator); the subsets are drawn
    here with a fixed random state so the value is reproducible. The std is None unless both
    sets are larger than `subset_size`: otherwise the subsets of at least one side are that
    whole set reordered, and their spread is not KID's uncertainty (torchmetrics refuses
    this case; here the mean stands, computed once where every subset is the whole of both).
    """
    import torch  # torch: only when scoring (the registry is read without it)
    from torchmetrics.image.kid import poly_mmd  # torchmetrics: imports the FID Inception too

    x64 = torch.as_tensor(np.asarray(x, dtype=np.float64))
    y64 = torch.as_tensor(np.asarray(y, dtype=np.float64))
    m = min(subset_size, len(x64), len(y64))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    if m == len(x64) and m == len(y64):
        return float(poly_mmd(x64, y64)), None
    rng = np.random.default_rng(random_state)
    values = []
    for _ in range(subsets):
        a = x64[rng.choice(len(x64), m, replace=False)]
        b = y64[rng.choice(len(y64), m, replace=False)]
        values.append(float(poly_mmd(a, b)))
    std = float(np.std(values)) if min(len(x64), len(y64)) > subset_size else None
    return float(np.mean(values)), std


def _rbf(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.exp(-sq / (2.0 * sigma**2))


def cmmd_from_embeddings(
    x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE
) -> float:
    """CMMD (Jayasumana et al. 2024): MMD^2 with a Gaussian RBF kernel over CLIP embeddings,
    the reference implementation's estimator (all pairs, diagonal included), times `scale`."""
    x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    value = (
        _rbf(x64, x64, sigma).mean()
        + _rbf(y64, y64, sigma).mean()
        - 2.0 * _rbf(x64, y64, sigma).mean()
    )
    return scale * float(value)


def cmmd_floor(
    y: np.ndarray, n: int, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE
) -> float:
    """Expected CMMD between `n` and len(y) samples of one distribution, in closed form.

    The estimator keeps the diagonal (k(x, x) = 1), so for equal distributions its expectation
    is (1/n + 1/n_ref) * (1 - E k(x, x')) rather than 0; E k over distinct pairs is estimated
    from the reference set `y` (the mean of its kernel matrix off the diagonal).
    """
    y64 = np.asarray(y, dtype=np.float64)
    m = len(y64)
    kernel = _rbf(y64, y64, sigma)
    between = (kernel.sum() - np.trace(kernel)) / (m * (m - 1))
    return scale * (1.0 / n + 1.0 / m) * (1.0 - float(between))


@dataclass(frozen=True, kw_only=True)
class Fid(DistributionMetric):
    def minimum_for(self, feature_dim: int) -> int:
        """A full-rank covariance: more images than feature dimensions, and `minimum`."""
        return max(self.minimum, feature_dim + 1)

    def measure(self, x: np.ndarray, y: np.ndarray, minimum: int) -> DistributionResult:
        n, n_ref = len(x), len(y)
        try:
            value = fid_from_features(x, y)
            floor = fid_floor(y, n)
        except FidNumericalError as exc:
            return DistributionResult(None, "numerical_error", n, n_ref, minimum, str(exc))
        method = f"gaussian, {FID_FLOOR_DRAWS} draws"
        return DistributionResult(
            value, "ok", n, n_ref, minimum, extra={"floor": floor, "floor_method": method}
        )


@dataclass(frozen=True, kw_only=True)
class Kid(DistributionMetric):
    def measure(self, x: np.ndarray, y: np.ndarray, minimum: int) -> DistributionResult:
        n, n_ref = len(x), len(y)
        mean, std = kid_from_features(x, y)
        extra: dict[str, Any] = {"floor": 0.0, "floor_method": "unbiased estimator"}
        note = None
        if std is None:
            note = (
                f"no std: a set is not larger than the subset size {KID_SUBSET_SIZE} "
                f"({n} vs {n_ref} reference), so its subsets are the whole set"
            )
        else:
            extra["std"] = std
        return DistributionResult(mean, "ok", n, n_ref, minimum, note, extra)


@dataclass(frozen=True, kw_only=True)
class Cmmd(DistributionMetric):
    def measure(self, x: np.ndarray, y: np.ndarray, minimum: int) -> DistributionResult:
        n, n_ref = len(x), len(y)
        floor = {"floor": cmmd_floor(y, n), "floor_method": "closed form"}
        return DistributionResult(cmmd_from_embeddings(x, y), "ok", n, n_ref, minimum, extra=floor)


FID = Fid(
    name="fid",
    higher_is_better=False,
    lower_bound=0.0,
    upper_bound=None,
    units="squared feature distance",
    identity=0.0,
    reference="pytorch-fid's Frechet distance (scipy.linalg.sqrtm, its imaginary-part check)",
    description="Frechet distance between feature Gaussians of the cell and the reference images",
    minimum=50,
)
KID = Kid(
    name="kid",
    higher_is_better=False,
    lower_bound=None,
    upper_bound=None,
    units="MMD^2, cubic polynomial kernel",
    # A set against itself is not two independent samples: the unbiased estimator gives
    # -2 (mean k(x, x) - mean k(x, x')) / n there, not its floor 0.
    identity=None,
    reference="torchmetrics.image.kid.poly_mmd per subset (subsets drawn here, seeded)",
    description="kernel inception distance: unbiased MMD^2, cubic polynomial kernel, subset mean",
    minimum=10,
)
CMMD = Cmmd(
    name="cmmd",
    higher_is_better=False,
    lower_bound=None,
    upper_bound=None,
    units="MMD^2 x 1000, RBF kernel",
    identity=0.0,
    reference="Jayasumana et al. 2024, the reference implementation's estimator",
    description="MMD^2 over unit CLIP image embeddings, RBF kernel sigma=10, x1000",
    minimum=10,
    clip_only=True,
)
