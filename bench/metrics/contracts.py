"""What each metric promises: direction, range, what it is computed over.

Kept apart from the computations so the score stage, the docs and the reports read one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.errors import UserInputError

Scope = Literal["paired", "image", "distribution"]


@dataclass(frozen=True)
class MetricSpec:
    """The contract of one metric.

    `scope` says what one value is computed from: `paired` = one image against the
    full-precision image of the same (prompt, repeat, seed); `image` = one image on its own
    (with its prompt); `distribution` = a cell's whole image set against the reference cell's.
    """

    name: str
    higher_is_better: bool
    lower_bound: float | None
    upper_bound: float | None
    scope: Scope
    description: str


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "psnr",
            True,
            0.0,
            None,
            "paired",
            "peak signal-to-noise ratio in dB (data range 1); +inf for identical images",
        ),
        MetricSpec(
            "ssim",
            True,
            -1.0,
            1.0,
            "paired",
            "structural similarity (Gaussian window 11, sigma 1.5); 1 for identical images",
        ),
        MetricSpec(
            "ms_ssim",
            True,
            0.0,
            1.0,
            "paired",
            "multi-scale SSIM, 5 scales; needs both sides of at least 176 px",
        ),
        MetricSpec(
            "lpips",
            False,
            0.0,
            None,
            "paired",
            "learned perceptual distance; only when torchvision and the backbone weights are local",
        ),
        MetricSpec(
            "clip_score",
            True,
            0.0,
            100.0,
            "image",
            "100 * max(cos(image embedding, prompt embedding), 0) per image (torchmetrics "
            "clamps the mean over images instead: the same unless an image's cosine is < 0)",
        ),
        MetricSpec(
            "fid",
            False,
            0.0,
            None,
            "distribution",
            "Frechet distance between feature Gaussians of the cell and the reference images",
        ),
        MetricSpec(
            "kid",
            False,
            None,
            None,
            "distribution",
            "kernel inception distance: unbiased MMD^2, cubic polynomial kernel, subset mean",
        ),
        MetricSpec(
            "cmmd",
            False,
            None,
            None,
            "distribution",
            "MMD^2 over unit CLIP image embeddings, RBF kernel sigma=10, x1000",
        ),
    )
}


def parse_metrics(names: list[str] | None) -> list[str]:
    """Validate a user's metric list (None = all); unknown names are a user error."""
    if not names:
        return list(METRICS)
    flat = [part.strip().lower() for name in names for part in name.split(",") if part.strip()]
    unknown = [name for name in flat if name not in METRICS]
    if unknown:
        raise UserInputError(f"--metrics: unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
    return list(dict.fromkeys(flat))
