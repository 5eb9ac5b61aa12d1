"""One tester every metric of the registry passes, as torchmetrics tests every metric through
one MetricTester: its contract is complete, identical inputs give its identity value, a
perturbation moves the value the way the contract says is worse, the value is a float in the
contract's range, batch and single agree where the metric has batches (a set metric: the
order of its samples does not matter), and malformed input is a MetricInputError.

Each scope takes its own inputs, so each has a probe: `paired` compares (1, 3, H, W) images,
`image` (the CLIP score) compares an image embedding with its prompt's and runs a real tiny
CLIP for batches, `distribution` compares feature sets. A metric of a new scope adds its probe
here; a metric that cannot run on this machine (LPIPS without its local weights) is skipped
with the reason it records in the scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.metrics import METRICS, parse_metrics
from bench.metrics.base import (
    DistributionMetric,
    Metric,
    MetricInputError,
    MetricUnavailable,
    PairedMetric,
    PairScore,
    PromptMetric,
    Resources,
)

SCOPES = {"paired": PairedMetric, "image": PromptMetric, "distribution": DistributionMetric}


def _of(scope: str) -> list[Metric]:
    return [metric for metric in METRICS.values() if metric.scope == scope]


def _ids(metric: Metric) -> str:
    return metric.name


every = pytest.mark.parametrize("metric", list(METRICS.values()), ids=_ids)
paired = pytest.mark.parametrize("metric", _of("paired"), ids=_ids)
prompted = pytest.mark.parametrize("metric", _of("image"), ids=_ids)
distributions = pytest.mark.parametrize("metric", _of("distribution"), ids=_ids)


def _loaded(metric: PairedMetric) -> Callable[[torch.Tensor, torch.Tensor], PairScore]:
    try:
        return metric.load()
    except MetricUnavailable as exc:
        pytest.skip(f"{metric.name} cannot run here: {exc}")


def worse(metric: Metric, value: float, than: float) -> bool:
    """Whether `value` is worse than `than` in the metric's direction."""
    return value < than if metric.higher_is_better else value > than


def in_range(metric: Metric, value: float) -> bool:
    low = -math.inf if metric.lower_bound is None else metric.lower_bound
    high = math.inf if metric.upper_bound is None else metric.upper_bound
    return low <= value <= high


def _check_value(metric: Metric, value: object) -> float:
    """A value of the contract: a plain float, finite, in the metric's range up to float32
    rounding (a unit embedding's cosine with itself is 1 + 1.5e-7: CLIP score 100.0000153)."""
    assert type(value) is float, f"{metric.name}: {type(value).__name__} {value!r}"
    rounding = 1e-6 * max(abs(value), 1.0)
    inside = in_range(metric, value) or any(
        in_range(metric, value + step) for step in (-rounding, rounding)
    )
    assert math.isfinite(value) and inside, f"{metric.name}: {value}"
    return value


# --- the contract -----------------------------------------------------------------------------


@every
def test_the_contract_is_complete(metric: Metric) -> None:
    assert METRICS[metric.name] is metric
    # `--metrics` lowercases what it is given: a name must survive that to be selectable.
    assert re.fullmatch(r"[a-z][a-z0-9_]*", metric.name)
    assert parse_metrics([metric.name.upper()]) == [metric.name]
    assert isinstance(metric, SCOPES[metric.scope])
    assert isinstance(metric.higher_is_better, bool)
    for bound in (metric.lower_bound, metric.upper_bound):
        assert bound is None or (isinstance(bound, float) and math.isfinite(bound))
    if metric.lower_bound is not None and metric.upper_bound is not None:
        assert metric.lower_bound < metric.upper_bound
    for text in (metric.units, metric.reference, metric.description):
        assert isinstance(text, str) and text.strip()
    if metric.identity is not None:
        assert isinstance(metric.identity, float)
        # The identity is the best value there is: the range's bound on the good side.
        assert in_range(metric, metric.identity)
        best = metric.upper_bound if metric.higher_is_better else metric.lower_bound
        assert best is None or metric.identity == best
    # `bench compare` judges the per-image metrics with a margin and only shows distributions.
    if metric.scope == "distribution":
        assert metric.margin is None
    else:
        assert isinstance(metric.margin, float) and metric.margin > 0
    if isinstance(metric, DistributionMetric):
        assert isinstance(metric.minimum, int) and metric.minimum >= 2


def test_every_metric_is_selected_by_default_and_every_scope_has_a_probe() -> None:
    assert parse_metrics(None) == list(METRICS)
    # The probes below cover these scopes; a metric of another needs its probe here.
    assert {metric.scope for metric in METRICS.values()} <= set(SCOPES)


# --- paired: an image against its reference --------------------------------------------------


def _picture(size: int = 192, seed: int = 0) -> torch.Tensor:
    """A smooth structured image (1, 3, size, size) in [0, 1]: MS-SSIM needs 176 px a side."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [
        np.sin(2 * np.pi * (rng.uniform(1, 4) * x + rng.uniform(1, 4) * y + rng.uniform()))
        for _ in range(3)
    ]
    array = (np.stack(channels, 0) * 0.4 + 0.5).astype(np.float32)
    return torch.from_numpy(array).unsqueeze(0)


def _noisy(image: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    """Gaussian noise of `sigma` 8-bit levels, quantized to 8 bits as a PNG would be."""
    noise = torch.from_numpy(np.random.default_rng(seed).normal(0, sigma / 255, image.shape))
    return ((image + noise.float()).clamp(0, 1) * 255).round() / 255


@paired
def test_paired_identical_images_give_the_identity(metric: Metric) -> None:
    assert isinstance(metric, PairedMetric)
    reference = _picture()
    score = _loaded(metric)(reference.clone(), reference)
    assert score.status == "ok" and score.identical
    if metric.identity is not None and math.isinf(metric.identity):
        assert score.value is None  # JSON has no infinity: null, with identical=true
    else:
        assert metric.identity is not None
        assert _check_value(metric, score.value) == pytest.approx(metric.identity, abs=1e-5)


@paired
def test_paired_more_noise_is_worse(metric: Metric) -> None:
    assert isinstance(metric, PairedMetric)
    function = _loaded(metric)
    reference = _picture()
    values = []
    for sigma in (2.0, 6.0, 16.0):
        score = function(_noisy(reference, sigma), reference)
        assert score.status == "ok" and not score.identical
        values.append(_check_value(metric, score.value))
    assert worse(metric, values[1], values[0]) and worse(metric, values[2], values[1]), values
    if metric.identity is not None:
        assert worse(metric, values[0], metric.identity)


@paired
def test_paired_malformed_input_is_an_error_and_another_size_is_data(metric: Metric) -> None:
    assert isinstance(metric, PairedMetric)
    function = _loaded(metric)
    image = _picture()
    for bad in (image[0], image.repeat(2, 1, 1, 1), image[:, :1], torch.cat([image] * 2, 1)):
        with pytest.raises(MetricInputError):
            function(bad, image)
        with pytest.raises(MetricInputError):
            function(image, bad)
    # A variant that made another size is a recorded status, not a crash of the scoring.
    score = function(_picture(208), image)
    assert (score.value, score.status) == (None, "size_mismatch") and "208" in str(score.note)


# --- image: an image with its prompt ---------------------------------------------------------


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(rows, dim=-1)


@prompted
def test_prompt_identical_embeddings_give_the_identity(metric: Metric) -> None:
    prompts = _unit(torch.randn(5, 16, generator=torch.Generator().manual_seed(0)))
    values = metric.from_embeddings(prompts.clone(), prompts)
    assert len(values) == 5
    for value in values:
        assert _check_value(metric, value) == pytest.approx(metric.identity, abs=1e-4)


@prompted
def test_prompt_an_image_further_from_its_prompt_is_worse(metric: Metric) -> None:
    generator = torch.Generator().manual_seed(1)
    prompt = _unit(torch.randn(1, 16, generator=generator))
    away = torch.randn(1, 16, generator=generator)
    away = _unit(away - (away * prompt).sum() * prompt)  # orthogonal to the prompt
    values = [
        _check_value(metric, metric.from_embeddings(_unit(prompt + t * away), prompt)[0])
        for t in (0.1, 0.5, 2.0)
    ]
    assert worse(metric, values[1], values[0]) and worse(metric, values[2], values[1]), values
    assert metric.identity is not None and worse(metric, values[0], metric.identity)


def _images(n: int, size: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(2)
    return [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)
    ]


@prompted
def test_prompt_batch_and_single_agree(metric: Metric, tiny_clip: Path) -> None:
    """Scored together (one batch, prompts padded to the longest) or one by one, each image
    gets the same value."""
    assert isinstance(metric, PromptMetric)
    scorer = metric.load(Resources(str(tiny_clip)))
    images = _images(5)
    texts = ["a red cube", "a photo of a cat on a long wooden table", "x", "two dogs", "sky"]
    together = scorer.score(images, texts)
    alone = [scorer.score([image], [text])[0] for image, text in zip(images, texts, strict=True)]
    assert len(together) == 5 and all(s.status == "ok" for s in together)
    for batch, single in zip(together, alone, strict=True):
        assert _check_value(metric, batch.value) == pytest.approx(single.value, abs=1e-4)


@prompted
def test_prompt_malformed_input_is_an_error(metric: Metric, tiny_clip: Path) -> None:
    assert isinstance(metric, PromptMetric)
    scorer = metric.load(Resources(str(tiny_clip)))
    with pytest.raises(MetricInputError):
        scorer.score(_images(2), ["one prompt"])
    prompts = _unit(torch.randn(3, 16))
    with pytest.raises(MetricInputError):
        metric.from_embeddings(prompts[:, :8], prompts)
    with pytest.raises(MetricInputError):
        metric.from_embeddings(prompts[0], prompts[0])


# --- distribution: a set of features against the reference set -------------------------------


def _features(n: int, seed: int, shift: float = 0.0, dim: int = 8) -> np.ndarray:
    """Unit-norm rows (as CLIP embeddings are), shifted along one fixed direction."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, dim)) + 0.5
    rows[:, 0] += shift
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _enough(metric: DistributionMetric, dim: int = 8) -> int:
    return max(metric.minimum_for(dim), 60)


@distributions
def test_distribution_a_set_against_itself_gives_the_identity(metric: Metric) -> None:
    assert isinstance(metric, DistributionMetric)
    x = _features(_enough(metric), seed=0)
    result = metric.compute(x, x.copy())
    assert result.status == "ok"
    if metric.identity is None:
        # KID's unbiased estimator assumes two independent sets: of one set with itself it
        # is -2 (mean k(x, x) - mean k(x, x')) / n, below its floor, and the contract says so.
        assert _check_value(metric, result.value) < result.extra["floor"]
    else:
        assert _check_value(metric, result.value) == pytest.approx(metric.identity, abs=1e-6)


@distributions
def test_distribution_a_larger_shift_is_worse(metric: Metric) -> None:
    assert isinstance(metric, DistributionMetric)
    n = _enough(metric)
    reference = _features(n, seed=0)
    same = metric.compute(_features(n, seed=1), reference)  # another draw: about the floor
    values = [_check_value(metric, same.value)]
    for shift in (0.5, 2.0):
        result = metric.compute(_features(n, seed=1, shift=shift), reference)
        assert result.status == "ok" and isinstance(result.extra["floor"], float)
        values.append(_check_value(metric, result.value))
    assert worse(metric, values[1], values[0]) and worse(metric, values[2], values[1]), values


@distributions
def test_distribution_sample_order_does_not_matter(metric: Metric) -> None:
    """A set has no batches: the same samples in another order give the same value."""
    assert isinstance(metric, DistributionMetric)
    n = _enough(metric)
    x, y = _features(n, seed=1, shift=0.5), _features(n, seed=0)
    order = np.random.default_rng(3).permutation(n)
    first, again = metric.compute(x, y), metric.compute(x[order], y[order[::-1]])
    assert (first.n, first.n_reference, first.minimum) == (n, n, metric.minimum_for(8))
    assert type(first.n) is int and type(first.n_reference) is int
    assert again.value == pytest.approx(first.value, rel=1e-9)


@distributions
def test_distribution_too_few_samples_and_malformed_input(metric: Metric) -> None:
    assert isinstance(metric, DistributionMetric)
    small = _features(metric.minimum - 1, seed=0)
    enough = _features(_enough(metric), seed=1)
    for result in (metric.compute(small, enough), metric.too_few(len(small), len(enough))):
        assert result is not None and (result.value, result.status) == (None, "too_few_samples")
        assert result.minimum >= metric.minimum and str(metric.minimum - 1) in str(result.note)
    assert metric.too_few(len(enough), len(enough)) is None
    with pytest.raises(MetricInputError):
        metric.compute(enough, _features(_enough(metric), seed=2, dim=4))
    with pytest.raises(MetricInputError):
        metric.compute(enough[:, 0], enough[:, 0])
