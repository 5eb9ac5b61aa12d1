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

FeatureFn = Callable[[Sequence[Image.Image]], np.ndarray]


class FeaturesUnavailable(Exception):
    """The configured feature extractor cannot run here; the message is the recorded reason."""


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
    """Frechet distance of Gaussians fitted to two feature sets (rows are samples)."""
    x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mu_x, mu_y = x64.mean(axis=0), y64.mean(axis=0)
    cov_x = np.atleast_2d(np.cov(x64, rowvar=False))
    cov_y = np.atleast_2d(np.cov(y64, rowvar=False))
    covmean = linalg.sqrtm(cov_x @ cov_y)
    if not np.isfinite(covmean).all():
        offset = np.eye(cov_x.shape[0]) * 1e-6
        covmean = linalg.sqrtm((cov_x + offset) @ (cov_y + offset))
    covmean = np.real(covmean)
    diff = mu_x - mu_y
    value = diff @ diff + np.trace(cov_x) + np.trace(cov_y) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def kid_from_features(
    x: np.ndarray,
    y: np.ndarray,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    random_state: int = RANDOM_STATE,
) -> tuple[float, float]:
    """KID: unbiased MMD^2 with kernel (x.y/d + 1)^3, mean and std over random subsets.

    Each subset's MMD^2 is torchmetrics' `poly_mmd` (its KID estimator); the subsets are drawn
    here with a fixed random state so the value is reproducible.
    """
    from torchmetrics.image.kid import poly_mmd  # imports the FID Inception wrapper: only here

    x64 = torch.as_tensor(np.asarray(x, dtype=np.float64))
    y64 = torch.as_tensor(np.asarray(y, dtype=np.float64))
    m = min(subset_size, len(x64), len(y64))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.default_rng(random_state)
    values = []
    for _ in range(subsets):
        a = x64[rng.choice(len(x64), m, replace=False)]
        b = y64[rng.choice(len(y64), m, replace=False)]
        values.append(float(poly_mmd(a, b)))
    return float(np.mean(values)), float(np.std(values))


def cmmd_from_embeddings(
    x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE
) -> float:
    """CMMD (Jayasumana et al. 2024): MMD^2 with a Gaussian RBF kernel over CLIP embeddings,
    the reference implementation's estimator (all pairs, diagonal included), times `scale`."""
    x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    gamma = 1.0 / (2.0 * sigma**2)

    def mean_kernel(a: np.ndarray, b: np.ndarray) -> float:
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return float(np.exp(-gamma * sq).mean())

    value = mean_kernel(x64, x64) + mean_kernel(y64, y64) - 2.0 * mean_kernel(x64, y64)
    return scale * value


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
    """`name` (fid, kid, cmmd) of features x against reference features y, or why not."""
    n, n_ref = len(x), len(y)
    minimum = fid_minimum(x.shape[1]) if name == "fid" else MIN_SAMPLES[name]
    too_few = too_few_samples(name, n, n_ref, minimum)
    if too_few is not None:
        return too_few
    if name == "fid":
        return DistributionResult(fid_from_features(x, y), "ok", n, n_ref, minimum)
    if name == "kid":
        mean, std = kid_from_features(x, y)
        return DistributionResult(mean, "ok", n, n_ref, minimum, extra={"std": std})
    if name == "cmmd":
        return DistributionResult(cmmd_from_embeddings(x, y), "ok", n, n_ref, minimum)
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
