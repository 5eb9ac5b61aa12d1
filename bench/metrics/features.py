"""Feature spaces of the distribution metrics: CLIP image embeddings (the default) or
torchmetrics' FID Inception from a local weights file (`features="inception"`).

A feature extractor takes images and returns one row per image; FID, KID and CMMD are then
computed over those rows (bench.metrics.distribution).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.metrics.clip import ClipBundle, image_embeddings


class FeaturesUnavailable(Exception):
    """The configured feature extractor cannot run here; the message is the recorded reason."""


def clip_features(bundle: ClipBundle) -> Callable[[Sequence[Image.Image]], np.ndarray]:
    """Unit-norm CLIP image embeddings as the feature space."""

    def extract(images: Sequence[Image.Image]) -> np.ndarray:
        return image_embeddings(bundle, images).numpy()

    return extract


def inception_features(weights: Path | None) -> Callable[[Sequence[Image.Image]], np.ndarray]:
    """torchmetrics' FID Inception (2048-d pool features) from a local weights file.

    It needs torch-fidelity (which itself needs torchvision); where either is missing, or no
    weights file is configured, FeaturesUnavailable says so.
    """
    if weights is None:
        raise FeaturesUnavailable("Inception features need a local weights file (none configured)")
    if not Path(weights).is_file():
        raise FeaturesUnavailable(f"{weights}: Inception weights file not found")
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3  # torch-fidelity: only if asked
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
