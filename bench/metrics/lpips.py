"""LPIPS, only when it can run offline from weights already on this machine.

torchmetrics' LPIPS builds its backbone with torchvision and fetches the backbone weights
through torch.hub. Nothing may be downloaded, so LPIPS runs only when torchvision is installed
and the backbone checkpoint is already in the torch hub cache; otherwise the score stage
records it as unavailable with this module's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.metrics.base import MetricUnavailable, PairedMetric, PairFunction, PairScore
from bench.metrics.fidelity import check_pair

if TYPE_CHECKING:
    import torch

# torchvision's AlexNet checkpoint, the backbone LPIPS uses by default.
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth"}


def backbone_path(net: str = "alex") -> Path:
    import torch  # torch: its hub folder is where the backbone would be

    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


@dataclass(frozen=True, kw_only=True)
class Lpips(PairedMetric):
    """torchmetrics' LearnedPerceptualImagePatchSimilarity, inputs in [0, 1] (`normalize`)."""

    net: str = "alex"

    def load(self) -> PairFunction:
        """A pairwise LPIPS function, or MetricUnavailable saying what is missing."""
        try:
            import torchvision  # noqa: F401  # torchvision: LPIPS's backbone needs it
        except ImportError as exc:
            raise MetricUnavailable(
                "LPIPS needs torchvision (not installed) and local backbone weights"
            ) from exc
        weights = backbone_path(self.net)
        if not weights.is_file():
            raise MetricUnavailable(f"LPIPS backbone weights not found locally at {weights}")
        import torch  # torch: only when scoring (the registry is read without it)
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity  # as torch

        metric = LearnedPerceptualImagePatchSimilarity(net_type=self.net, normalize=True).eval()

        @torch.inference_mode()
        def score(image: torch.Tensor, reference: torch.Tensor) -> PairScore:
            bad = check_pair(image, reference)
            if bad:
                return bad
            value = float(metric(image, reference))
            return PairScore(value, identical=torch.equal(image, reference))

        return score


LPIPS = Lpips(
    name="lpips",
    higher_is_better=False,
    lower_bound=0.0,
    upper_bound=None,
    units="distance",
    identity=0.0,
    reference="torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity"
    "(net_type='alex', normalize=True)",
    description="learned perceptual distance; only when torchvision and the backbone weights are "
    "local",
    margin=0.01,
)
