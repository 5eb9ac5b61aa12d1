"""Distribution distances between a cell's images and the full-precision images: FID, KID, CMMD.

These compare image *sets*, not pairs, so they need many images before they mean anything: FID
is biased at small n and its covariance is singular below the feature dimension. Where n is too
small the result says so (`too_few_samples` with n and the minimum) instead of a bare number.
Features come from a configurable extractor: the CLIP image tower by default (unit-norm
projected embeddings), or torchmetrics' Inception from a local weights file when configured.
CMMD is defined over CLIP embeddings and always uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import linalg

from bench.metrics.clip import ClipBundle, image_embeddings

# Minimum images per side. FID also needs more images than feature dimensions (see fid_minimum).
MIN_SAMPLES = {"fid": 50, "kid": 10, "cmmd": 10}
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

FeatureFn = Callable[[Sequence[Image.Image]], np.ndarray]


class FeaturesUnavailable(Exception):
    """The configured feature extractor cannot run here; the message is the recorded reason."""


class FidNumericalError(Exception):
    """sqrtm of the covariance product has a real imaginary part: no FID (the message says)."""


@dataclass(frozen=True)
class DistributionResult:
    """One distribution metric of one cell against its reference set."""

    value: float | None
    status: str
    n: int
    n_reference: int
    minimum: int
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def fid_minimum(feature_dim: int) -> int:
    """FID needs a full-rank covariance: more images than feature dimensions, and at least 50."""
    return max(MIN_SAMPLES["fid"], feature_dim + 1)


def fid_from_features(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to two feature sets (rows are samples).

    Like pytorch-fid, the square root of the covariance product may come back complex from
    rounding; an imaginary part on its diagonal above FID_IMAGINARY_TOLERANCE is an error
    (FidNumericalError), below it the real part is the answer.
    """
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
    from torchmetrics.image.kid import poly_mmd  # imports the FID Inception wrapper: only here

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


def too_few_samples(name: str, n: int, n_ref: int, minimum: int) -> DistributionResult | None:
    """The `too_few_samples` result when either set is below `minimum`, else None."""
    if min(n, n_ref) >= minimum:
        return None
    return DistributionResult(
        None,
        "too_few_samples",
        n,
        n_ref,
        minimum,
        f"{name} needs at least {minimum} images per set, got {n} vs {n_ref} reference",
    )


def distribution_metric(name: str, x: np.ndarray, y: np.ndarray) -> DistributionResult:
    """`name` (fid, kid, cmmd) of features x against reference features y, or why not.

    Every value comes with its `floor` (in `extra`): what the metric gives for two samples of
    one distribution at these sizes, so a reader sees how far the value is from "no
    difference" (docs/scores.md).
    """
    n, n_ref = len(x), len(y)
    minimum = fid_minimum(x.shape[1]) if name == "fid" else MIN_SAMPLES[name]
    too_few = too_few_samples(name, n, n_ref, minimum)
    if too_few is not None:
        return too_few
    if name == "fid":
        try:
            value = fid_from_features(x, y)
            floor = fid_floor(y, n)
        except FidNumericalError as exc:
            return DistributionResult(None, "numerical_error", n, n_ref, minimum, str(exc))
        method = f"gaussian, {FID_FLOOR_DRAWS} draws"
        return DistributionResult(
            value, "ok", n, n_ref, minimum, extra={"floor": floor, "floor_method": method}
        )
    if name == "kid":
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
    if name == "cmmd":
        floor = {"floor": cmmd_floor(y, n), "floor_method": "closed form"}
        return DistributionResult(cmmd_from_embeddings(x, y), "ok", n, n_ref, minimum, extra=floor)
    raise ValueError(f"unknown distribution metric {name!r}")


def clip_features(bundle: ClipBundle) -> FeatureFn:
    """Unit-norm CLIP image embeddings as the feature space."""

    def extract(images: Sequence[Image.Image]) -> np.ndarray:
        return image_embeddings(bundle, images).numpy()

    return extract


def inception_features(weights: Path | None) -> FeatureFn:
    """torchmetrics' FID Inception (2048-d pool features) from a local weights file.

    It needs torch-fidelity (which itself needs torchvision); where either is missing, or no
    weights file is configured, FeaturesUnavailable says so.
    """
    if weights is None:
        raise FeaturesUnavailable("Inception features need a local weights file (none configured)")
    if not Path(weights).is_file():
        raise FeaturesUnavailable(f"{weights}: Inception weights file not found")
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as exc:
        raise FeaturesUnavailable(f"Inception features need torch-fidelity: {exc}") from exc
    try:
        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(weights),
        )
    except (ImportError, ModuleNotFoundError, RuntimeError, OSError) as exc:
        raise FeaturesUnavailable(f"Inception features unavailable: {exc}") from exc
    net.eval()

    @torch.inference_mode()
    def extract(images: Sequence[Image.Image]) -> np.ndarray:
        batch = torch.stack(
            [torch.from_numpy(np.asarray(im.convert("RGB"))).permute(2, 0, 1) for im in images]
        )
        return net(batch).double().numpy()

    return extract
