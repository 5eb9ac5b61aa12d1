"""Image quality metrics: paired fidelity, prompt alignment, distribution distances, statistics.

`METRICS` is the registry: one entry per metric, holding its contract (direction, range, units,
identity value, margin) and its computation (bench.metrics.base), as torchmetrics keeps both in
one class, so `bench score` dispatches by scope and reports never have to guess which way is
better. A new metric is an entry in its module and a line here; tests/metrics/test_conformance.py
then puts it through the tester every metric passes.
"""

from bench.errors import ArgumentError
from bench.metrics.base import Metric
from bench.metrics.clip_score import CLIP_SCORE
from bench.metrics.distribution import CMMD, FID, KID
from bench.metrics.fidelity import MS_SSIM, PSNR, SSIM
from bench.metrics.lpips import LPIPS

METRICS: dict[str, Metric] = {
    metric.name: metric for metric in (PSNR, SSIM, MS_SSIM, LPIPS, CLIP_SCORE, FID, KID, CMMD)
}


def parse_metrics(names: list[str] | None) -> list[str]:
    """Validate a user's metric list (None = all); unknown names are an ArgumentError."""
    if not names:
        return list(METRICS)
    flat = [part.strip().lower() for name in names for part in name.split(",") if part.strip()]
    unknown = [name for name in flat if name not in METRICS]
    if unknown:
        raise ArgumentError("metrics", f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
    return list(dict.fromkeys(flat))
