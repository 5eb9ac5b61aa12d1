"""Memory and energy counters of a cell process, several side by side.

torch's allocator counters say what PyTorch asked for; NVML's "used" says what the device
actually had taken (context, other libraries, fragmentation) and is what decides whether a model
fits; host RSS is the only counter on a CPU. Each is labelled by name in the records.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch


class NvmlDevice:
    """NVML handle of the CUDA device a cell uses, found without touching CUDA.

    The baseline must be read before the process creates its CUDA context, so the device is
    matched through CUDA_VISIBLE_DEVICES (ordinals or UUIDs) instead of asking torch.
    """

    def __init__(self, torch_device: torch.device) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        index = torch_device.index if torch_device.index is not None else 0
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
        visible = [v for v in visible if v]
        target = visible[index] if index < len(visible) else str(index)
        if target.isdigit():
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(int(target))
        else:
            self.handle = pynvml.nvmlDeviceGetHandleByUUID(target)

    def used_bytes(self) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def total_energy_j(self) -> float | None:
        """Joules since the driver loaded, or None where the GPU has no energy counter."""
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0
        except self._nvml.NVMLError:
            return None


@dataclass
class _Peaks:
    nvml_used: int = 0
    host_rss: int = 0
    samples: int = 0


@dataclass
class MemorySampler:
    """Background thread reading NVML used memory and host RSS every `interval_s`.

    Peaks are kept per phase: `begin_phase()` resets them, `end_phase()` returns them merged
    with torch's own peak counters for the same span.
    """

    device: torch.device
    interval_s: float = 0.005
    nvml: NvmlDevice | None = None
    _peaks: _Peaks = field(default_factory=_Peaks)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        if self.device.type == "cuda" and self.nvml is None:
            with suppress(Exception):
                self.nvml = NvmlDevice(self.device)

    def _read(self) -> tuple[int, int]:
        used = self.nvml.used_bytes() if self.nvml else 0
        return used, self._process.memory_info().rss

    def _loop(self) -> None:
        while not self._stop.is_set():
            used, rss = self._read()
            with self._lock:
                self._peaks.nvml_used = max(self._peaks.nvml_used, used)
                self._peaks.host_rss = max(self._peaks.host_rss, rss)
                self._peaks.samples += 1
            self._stop.wait(self.interval_s)

    def start(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def baseline(self) -> dict[str, int]:
        used, rss = self._read()
        out = {"host_rss_bytes": rss}
        if self.nvml:
            out["nvml_used_bytes"] = used
        return out

    def begin_phase(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        used, rss = self._read()
        with self._lock:
            self._peaks = _Peaks(nvml_used=used, host_rss=rss, samples=1)

    def end_phase(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        used, rss = self._read()
        with self._lock:
            peaks = self._peaks
            peaks.nvml_used = max(peaks.nvml_used, used)
            peaks.host_rss = max(peaks.host_rss, rss)
            peaks.samples += 1
        out: dict[str, Any] = {"host_rss_peak_bytes": peaks.host_rss, "samples": peaks.samples}
        if self.device.type == "cuda":
            out["torch_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
            out["torch_max_reserved_bytes"] = int(torch.cuda.max_memory_reserved(self.device))
        if self.nvml:
            out["nvml_used_peak_bytes"] = peaks.nvml_used
        return out

    def energy_j(self) -> float | None:
        return self.nvml.total_energy_j() if self.nvml else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def monotonic() -> float:
    return time.perf_counter()
