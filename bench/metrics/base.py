"""What a metric is: its contract, the shape of its computation per scope, and what it returns.

A metric is one entry of the registry (`bench.metrics.METRICS`): an instance of one of the
scope classes below, holding its contract (direction, range, units, the value identical inputs
give, what it follows, `bench compare`'s margin) and its computation. `bench score` dispatches
through the registry by scope, never by name, and `tests/metrics/test_conformance.py` puts every
entry through one tester, as torchmetrics tests every metric through one. Nothing here loads
torch, so `bench compare` reads the contracts without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from bench.errors import ArgumentError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from bench.metrics.clip import ClipBundle

Scope = Literal["paired", "image", "distribution"]
#: The feature spaces FID and KID can use (`features=`); CMMD always uses CLIP's.
FEATURE_SPACES = ("clip", "inception")

PairFunction = Callable[["torch.Tensor", "torch.Tensor"], "PairScore"]
FeatureFn = Callable[[Sequence["Image.Image"]], "np.ndarray"]


class MetricUnavailable(Exception):
    """A metric cannot run here (a model or weights missing); the message is the reason
    recorded in the scores."""


class MetricInputError(ValueError):
    """Inputs a metric is not defined on (a tensor of the wrong rank, feature sets of different
    widths, a prompt count that is not the image count): the caller's mistake, never data."""


@dataclass(frozen=True)
class PairScore:
    """One metric of one image (against its reference, or with its prompt). `value` is None
    when `status` is not ok, or for identity where the identity value is not finite (PSNR)."""

    value: float | None
    status: str = "ok"
    note: str | None = None
    identical: bool = False
    #: a video's: the worst frame's value (lowest where higher is better) and the frame count
    worst: float | None = None
    frames: int | None = None
    #: a video's: how its frames make `value` ("mean" of the frames' values, or "mse": PSNR
    #: of the mean squared error over all frames)
    pooling: str | None = None


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


def video_score(
    scores: list[PairScore],
    higher_is_better: bool,
    what: str = "frames",
    pool: Callable[[list[PairScore]], float | None] | None = None,
) -> PairScore:
    """One video's score from its frames' scores, with the worst frame beside it, since one
    bad frame is visible in a video that averages well.

    The value is the mean of the frames' values, or `pool` of them where the metric has one
    (PSNR's pooled error, which counts an identical frame as no error rather than leaving it
    out). A video whose every frame is identical is identical. The first frame that could not
    be scored makes the video's status.
    """
    count = len(scores)
    failed = next((s for s in scores if s.status != "ok"), None)
    if failed is not None:
        return PairScore(None, failed.status, failed.note, frames=count)
    values = [s.value for s in scores if s.value is not None]
    if not values:
        return PairScore(None, "ok", f"all {count} {what} identical", identical=True, frames=count)
    worst = min(values) if higher_is_better else max(values)
    identical = all(s.identical for s in scores)
    if pool is not None:
        same = count - len(values)
        note = f"{same} of {count} {what} identical (error 0 in the pooled error)" if same else None
        return PairScore(pool(scores), "ok", note, identical, worst, count, "mse")
    mean = float(sum(values) / len(values))
    return PairScore(mean, "ok", None, identical, worst, count, "mean")


@dataclass(frozen=True, kw_only=True)
class Metric:
    """The contract of one metric; a scope class below adds its computation.

    `scope` says what one value is computed from: `paired` = one image against the
    full-precision image of the same (prompt, repeat, seed); `image` = one image on its own
    (with its prompt); `distribution` = a cell's whole image set against the reference cell's.
    """

    scope: ClassVar[Scope]
    #: what `bench score --metrics` / `score(metrics=)`, `bench compare --quality-metric` and
    #: `--quality-margin NAME=...` select it by, and each score row's `metric`
    name: str
    higher_is_better: bool
    lower_bound: float | None
    upper_bound: float | None
    units: str
    #: the value of identical inputs (an image and its reference, a set and itself, an image
    #: embedding equal to its prompt's); math.inf is stored as null with `identical: true`.
    #: None: the metric has none (KID's unbiased estimator needs two independent sets)
    identity: float | None
    #: the implementation or paper the value follows (what its tests check it against)
    reference: str
    description: str
    #: `bench compare`'s default margin: the smallest mean change worth failing a build for,
    #: in `units`; None for a metric compare shows but never judges (the distributions)
    margin: float | None = None


@dataclass(frozen=True, kw_only=True)
class PairedMetric(Metric):
    """One value per image, against the reference image of the same prompt, repeat and seed.

    `function` scores one pair of (1, 3, H, W) tensors in [0, 1]; a metric that needs a model
    overrides `load` instead. `video_pool` makes a video's value from its frames' scores where
    their mean is not the metric's (PSNR).
    """

    scope: ClassVar[Scope] = "paired"
    function: PairFunction | None = None
    video_pool: Callable[[list[PairScore]], float | None] | None = None

    def load(self) -> PairFunction:
        """The pair function, ready to run; MetricUnavailable when it cannot run here."""
        if self.function is None:
            raise NotImplementedError(f"{self.name}: give a function or override load")
        return self.function

    def video(self, frames: list[PairScore]) -> PairScore:
        return video_score(frames, self.higher_is_better, pool=self.video_pool)


@dataclass(frozen=True)
class PromptScorer:
    """A prompt metric loaded for one scoring call."""

    #: the model as configured, recorded in each row's `model` (rows of another model are
    #: other rows)
    model: str
    batch_size: int
    #: per image, its score with its prompt (the same order)
    score: Callable[[Sequence[Image.Image], Sequence[str]], list[PairScore]]


@dataclass(frozen=True, kw_only=True)
class PromptMetric(Metric):
    """One value per image, from the image and its prompt (scope `image`)."""

    scope: ClassVar[Scope] = "image"

    def load(self, resources: Resources) -> PromptScorer:
        """The scorer, its model taken from `resources`; MetricUnavailable with the reason."""
        raise NotImplementedError

    def video(self, frames: list[PairScore]) -> PairScore:
        """The mean over the frames (worst beside it); a frame's note (its prompt cut) kept."""
        score = video_score(frames, self.higher_is_better)
        note = next((s.note for s in frames if s.note), None)
        return replace(score, note=note) if note else score


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


@dataclass(frozen=True, kw_only=True)
class DistributionMetric(Metric):
    """One value per cell, from its image set's features against the reference cell's.

    `minimum` is the fewest samples per set it means anything at; `clip_only`: computed over
    CLIP image embeddings whatever `features=` says (CMMD is defined over them).
    """

    scope: ClassVar[Scope] = "distribution"
    minimum: int
    clip_only: bool = False

    def minimum_for(self, feature_dim: int) -> int:
        """The fewest samples per set at this feature width."""
        return self.minimum

    def too_few(self, n: int, n_ref: int) -> DistributionResult | None:
        """`too_few_samples` before any feature is extracted, else None."""
        return too_few_samples(self.name, n, n_ref, self.minimum)

    def feature_space(self, resources: Resources) -> tuple[str, FeatureFn]:
        """(name, extractor) of the features it is computed over; MetricUnavailable if none."""
        return resources.feature_space("clip" if self.clip_only else resources.features)

    def compute(self, x: np.ndarray, y: np.ndarray) -> DistributionResult:
        """The metric of features `x` (rows are samples) against reference features `y`, or
        `too_few_samples`. Every value comes with its `floor` in `extra`: what the metric gives
        for two samples of one distribution at these sizes (docs/scores.md)."""
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
            raise MetricInputError(
                f"{self.name}: expected two (samples, features) arrays of one feature width, "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        n, n_ref = len(x), len(y)
        minimum = self.minimum_for(x.shape[1])
        too_few = too_few_samples(self.name, n, n_ref, minimum)
        if too_few is not None:
            return too_few
        return self.measure(x, y, minimum)

    def measure(self, x: np.ndarray, y: np.ndarray, minimum: int) -> DistributionResult:
        """The value of sets large enough (`compute` checked them)."""
        raise NotImplementedError


class Resources:
    """What several metrics of one scoring call share, each loaded once and only when a
    metric asks: the CLIP model and the feature extractors. What cannot load is a
    MetricUnavailable with the reason, the same each time it is asked for."""

    def __init__(
        self, clip_model: str | None, features: str = "clip", inception_weights: Path | None = None
    ) -> None:
        self.clip_model = clip_model
        self.features = check_features(features)
        self.inception_weights = inception_weights
        self._clip: ClipBundle | str | None = None
        self._spaces: dict[str, tuple[str, FeatureFn] | str] = {}

    def clip(self) -> ClipBundle:
        if self._clip is None:
            from bench.metrics.clip import ClipUnavailable, load_clip  # transformers: CLIP only

            try:
                self._clip = load_clip(self.clip_model)
            except ClipUnavailable as exc:
                self._clip = str(exc)
        if isinstance(self._clip, str):
            raise MetricUnavailable(self._clip)
        return self._clip

    def feature_space(self, kind: str) -> tuple[str, FeatureFn]:
        """`clip` (CLIP image embeddings) or `inception` (torchmetrics' FID Inception)."""
        if kind not in self._spaces:
            self._spaces[kind] = self._load_space(kind)
        space = self._spaces[kind]
        if isinstance(space, str):
            raise MetricUnavailable(space)
        return space

    def _load_space(self, kind: str) -> tuple[str, FeatureFn] | str:
        from bench.metrics.features import (  # torch: the extractors run models
            FeaturesUnavailable,
            clip_features,
            inception_features,
        )

        try:
            if kind == "clip":
                bundle = self.clip()
                return f"clip:{bundle.name}", clip_features(bundle)
            weights = self.inception_weights
            return f"inception:{weights}", inception_features(weights)
        except (MetricUnavailable, FeaturesUnavailable) as exc:
            return str(exc)


def check_features(features: Any) -> str:
    """`features=` is one of FEATURE_SPACES."""
    if features not in FEATURE_SPACES:
        raise ArgumentError("features", f"expected {' or '.join(FEATURE_SPACES)}, got {features!r}")
    return features
