"""Image quality metrics: paired fidelity, prompt alignment, distribution distances, statistics.

Each metric declares its contract (direction, range, what it compares) in `contracts.METRICS`,
as torchmetrics does, so reports never have to guess which way is better.
"""

from bench.metrics.contracts import METRICS, MetricSpec, parse_metrics

__all__ = ["METRICS", "MetricSpec", "parse_metrics"]
