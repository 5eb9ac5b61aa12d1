"""LPIPS, only when it can run offline from weights already on this machine.

torchmetrics' LPIPS builds its backbone with torchvision and fetches the backbone weights
through torch.hub. Nothing may be downloaded, so LPIPS runs only when torchvision is installed
and the backbone checkpoint is already in the torch hub cache; otherwise the score stage
records it as unavailable with this module's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from bench.metrics.fidelity import PairScore, check_pair

# torchvision's AlexNet checkpoint, the backbone LPIPS uses by default.
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth"}


class MetricUnavailable(Exception):
    """A metric cannot run here; the message is the reason recorded in the scores."""


def backbone_path(net: str = "alex") -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def load_lpips(net: str = "alex") -> Callable[[torch.Tensor, torch.Tensor], PairScore]:
    """A pairwise LPIPS function, or MetricUnavailable saying what is missing."""
    try:
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise MetricUnavailable(
            "LPIPS needs torchvision (not installed) and local backbone weights"
        ) from exc
    weights = backbone_path(net)
    if not weights.is_file():
        raise MetricUnavailable(f"LPIPS backbone weights not found locally at {weights}")
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True).eval()

    @torch.inference_mode()
    def score(image: torch.Tensor, reference: torch.Tensor) -> PairScore:
        bad = check_pair(image, reference)
        if bad:
            return bad
        return PairScore(float(metric(image, reference)), identical=torch.equal(image, reference))

    return score
