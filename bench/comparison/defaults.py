"""The default thresholds of a comparison that are tables, apart from the statistics that apply
them: `bench compare --help` prints them, and must answer without loading pandas or scipy
(bench.comparison.memory, .stability and .verdicts, which use them, load both).
"""

from __future__ import annotations

from bench.metrics import METRICS

# The largest noise band a change has to clear: ×1.2 growth must stay callable on every
# counter, and a band this wide would already be a broken measurement, not noise.
MAX_BAND = 1.15
# Per memory counter (bench.comparison.memory), 1 + its A/A noise between identical runs.
# host RSS: measured on this project's shared 2-core CPU machine with
# benchmarks/compare_aa.py (docs/compare.md): the per-image peaks' median of identical runs
# differed by up to ×1.103, a log-ratio spread of about 6% per cell; for at most 5% of
# three-cell pairs to cross the band by noise it must be about ×1.13, rounded up to the cap.
# NVML and torch reserved: no GPU was available to measure them, so they sit at the old
# default threshold (×1.05), to be calibrated with compare_aa.py on a GPU runner.
DEFAULT_BANDS: dict[str, float] = {
    "nvml_used": 1.05,
    "torch_reserved": 1.05,
    "torch_allocated": 1.0,
    "host_rss": MAX_BAND,
}
# How far apart identical processes run one cell on an idle machine, by device type: the A/A
# band of time, like the memory counters' bands (bench.comparison.memory). Measured on this
# project's 2-core VM with the machine idle (other processes at 0.2-2.8% of the processors):
# the Q4_K cell of configs/calibration.yaml took x1.26 and x1.16 the wall time (and x1.23,
# x1.17 the CPU seconds) in one of two identical runs, full and Q8_0 within x1.06
# (benchmarks/compare_aa.py, docs/compare.md). GPUs: not measured yet (1.0: the factor alone).
TIME_PROCESS_BANDS: dict[str, float] = {"cpu": 1.28}
# Per metric, the smallest mean change (in the metric's units) worth failing a build for: each
# metric's contract says (bench.metrics.base.Metric.margin).
DEFAULT_QUALITY_MARGINS: dict[str, float] = {
    name: metric.margin for name, metric in METRICS.items() if metric.margin is not None
}
