"""Per-phase timing of one pipeline call: text encoding, each denoising step, decoding.

Step ends come from `callback_on_step_end`; the start of the first step from a forward
pre-hook on the transformer, so text encoding is not charged to step 0. On CUDA every mark
synchronizes first, otherwise a mark would only time the kernel launch.
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
    first_forward: float | None = None
    step_ends: list[float] = field(default_factory=list)
    end: float = 0.0

    def reset(self) -> None:
        self.first_forward = None
        self.step_ends = []
        synchronize(self.device)
        self.start = monotonic()

    def pre_forward_hook(self, _module: torch.nn.Module, _args: Any) -> None:
        if self.first_forward is None:
            synchronize(self.device)
            self.first_forward = monotonic()

    def on_step_end(self, _pipe: Any, _step: int, _timestep: Any, kwargs: dict) -> dict:
        synchronize(self.device)
        self.step_ends.append(monotonic())
        return kwargs

    def finish(self) -> None:
        synchronize(self.device)
        self.end = monotonic()

    def summary(self) -> dict[str, Any]:
        begin = self.first_forward if self.first_forward is not None else self.start
        marks = [begin, *self.step_ends]
        return {
            "wall_s": self.end - self.start,
            "encode_s": begin - self.start,
            "step_s": [b - a for a, b in itertools.pairwise(marks)],
            "decode_s": self.end - (self.step_ends[-1] if self.step_ends else begin),
        }
