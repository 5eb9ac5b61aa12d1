"""Per-phase timing of one pipeline call: text encoding, the first step's transfer, each
denoising step, decoding.

Step ends come from `callback_on_step_end`; the start of the first step from forward pre-hooks,
so text encoding is not charged to step 0, nor is the transfer an offload mode makes before it.
A module's forward pre-hooks run before its `forward`, and offload hooks (accelerate's
`cpu_offload_with_hook`, diffusers' group offloading) replace `forward` with a wrapper that
moves the weights first: the transformer's pre-hook therefore fires before its weights move,
the pre-hooks of its direct children after the transformer-level move. The span between the two
is `transfer_s` (under model offload, the whole transformer copied in; without offload, about
nothing). Moves inside the children (sequential offload's per-layer hooks, group offloading's
per-block ones) happen at every step and stay in the steps: they are what those modes cost per
step. On CUDA every mark synchronizes first, otherwise a mark would only time the kernel launch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.runner.memory import monotonic, synchronize


@dataclass
class CallTimer:
    device: torch.device
    start: float = 0.0
    first_forward: float | None = None  # the denoiser called, its offload hooks not yet run
    first_compute: float | None = None  # its first submodule called: its weights are in place
    step_ends: list[float] = field(default_factory=list)
    end: float = 0.0

    def watch(self, denoiser: torch.nn.Module) -> None:
        """Hook the denoiser (its call) and each of its direct children (its compute)."""
        denoiser.register_forward_pre_hook(self.pre_forward_hook)
        for child in denoiser.children():
            child.register_forward_pre_hook(self.child_pre_forward_hook)

    def reset(self) -> None:
        self.first_forward = None
        self.first_compute = None
        self.step_ends = []
        synchronize(self.device)
        self.start = monotonic()

    def pre_forward_hook(self, _module: torch.nn.Module, _args: Any) -> None:
        if self.first_forward is None:
            synchronize(self.device)
            self.first_forward = monotonic()

    def child_pre_forward_hook(self, _module: torch.nn.Module, _args: Any) -> None:
        if self.first_forward is not None and self.first_compute is None:
            synchronize(self.device)
            self.first_compute = monotonic()

    def on_step_end(self, _pipe: Any, _step: int, _timestep: Any, kwargs: dict) -> dict:
        synchronize(self.device)
        self.step_ends.append(monotonic())
        return kwargs

    def finish(self) -> None:
        synchronize(self.device)
        self.end = monotonic()

    def summary(self) -> dict[str, Any]:
        begin = self.first_forward if self.first_forward is not None else self.start
        compute = self.first_compute if self.first_compute is not None else begin
        marks = [compute, *self.step_ends]
        return {
            "wall_s": self.end - self.start,
            "encode_s": begin - self.start,
            "transfer_s": compute - begin,
            "step_s": [b - a for a, b in itertools.pairwise(marks)],
            "decode_s": self.end - (self.step_ends[-1] if self.step_ends else compute),
        }


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process) since boot."""
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _process_cpu_s(pid: int | None = None) -> float:
    """CPU seconds of one process (all its threads; this one by default), 0 once it is gone."""
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return float(t.user + t.system)


@dataclass
class CpuMeter:
    """Who used the processors during one image: this process, and everything else.

    A wall time only means something when the machine did nothing else meanwhile: two runs of
    the same code on a machine that other jobs load differ by 30% and more. The CPU seconds
    other processes took during each image (the machine's busy time less this process's and
    the harness's own, `harness_pids`: the sweep's driver) are the direct measure of that,
    recorded beside the time so `bench compare` can refuse to judge times made on a busy
    machine instead of calling a regression.
    """

    harness_pids: tuple[int, ...] = ()
    start_busy: float = 0.0
    start_own: float = 0.0
    start_harness: float = 0.0

    def _harness_s(self) -> float:
        return sum(_process_cpu_s(pid) for pid in self.harness_pids)

    def begin(self) -> None:
        self.start_busy, self.start_own = _busy_cpu_s(), _process_cpu_s()
        self.start_harness = self._harness_s()

    def end(self) -> dict[str, float | int]:
        import os

        own = _process_cpu_s() - self.start_own
        harness = self._harness_s() - self.start_harness
        others = (_busy_cpu_s() - self.start_busy) - own - harness
        return {
            "process_s": own,
            "harness_s": harness,
            "others_s": max(others, 0.0),
            "cpus": os.cpu_count() or 1,
        }
