"""CLIP score: how well an image matches its prompt, 100 * max(cos(image, prompt), 0).

Computed from transformers' CLIPModel embeddings (bench.metrics.clip says why not torchmetrics'
`CLIPScore`). torchmetrics clamps the mean over images instead, max(100 * mean(cos), 0); the
two agree unless an image's cosine with its prompt is negative. The clamp stays per image so
every stored value lies in the metric's range [0, 100] and the scores of runs made before stay
comparable (docs/scores.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from bench.metrics.base import (
    MetricInputError,
    MetricUnavailable,
    PairScore,
    PromptMetric,
    PromptScorer,
    Resources,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from bench.metrics.clip import ClipBundle


@dataclass(frozen=True, kw_only=True)
class ClipScore(PromptMetric):
    def load(self, resources: Resources) -> PromptScorer:
        from bench.metrics.clip import BATCH_SIZE  # transformers: the CLIP model's module

        bundle = resources.clip()
        if bundle.tokenizer is None:
            raise MetricUnavailable(f"{bundle.name}: the CLIP folder has no tokenizer")
        return PromptScorer(bundle.name, BATCH_SIZE, partial(self.scores, bundle))

    def scores(
        self, bundle: ClipBundle, images: Sequence[Image.Image], texts: Sequence[str]
    ) -> list[PairScore]:
        """Per image, its score with its prompt; a prompt cut to fit CLIP's text length says so
        in the note."""
        values, truncated = self.values(bundle, images, texts)
        cut = f"prompt truncated to {bundle.max_text_tokens} tokens"
        return [
            PairScore(value, "ok", cut if was_cut else None)
            for value, was_cut in zip(values, truncated, strict=True)
        ]

    def values(
        self, bundle: ClipBundle, images: Sequence[Image.Image], texts: Sequence[str]
    ) -> tuple[list[float], list[bool]]:
        """Per image: 100 * max(cos, 0) with its prompt, and whether the prompt was truncated."""
        from bench.metrics.clip import image_embeddings, text_embeddings  # transformers: CLIP

        if len(images) != len(texts):
            raise MetricInputError(f"{len(images)} images but {len(texts)} prompts")
        if not images:
            return [], []
        image_emb = image_embeddings(bundle, images)
        text_emb, truncated = text_embeddings(bundle, texts)
        return self.from_embeddings(image_emb, text_emb), truncated

    def from_embeddings(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> list[float]:
        """The score of unit-norm image embeddings (N, D) with their prompts' (N, D)."""
        if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
            raise MetricInputError(
                f"expected image and text embeddings of one shape (N, D), got "
                f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
            )
        cosine = (image_emb * text_emb).sum(dim=-1)
        return [float(s) for s in (100.0 * cosine.clamp(min=0)).tolist()]


CLIP_SCORE = ClipScore(
    name="clip_score",
    higher_is_better=True,
    lower_bound=0.0,
    upper_bound=100.0,
    units="100 x cosine",
    identity=100.0,
    reference="torchmetrics.multimodal.CLIPScore, its clamp taken per image (module docstring)",
    description="100 * max(cos(image embedding, prompt embedding), 0) per image (torchmetrics "
    "clamps the mean over images instead: the same unless an image's cosine is < 0)",
    margin=0.5,
)
