"""Memory and energy counters of a cell process, several side by side.

torch's allocator counters say what PyTorch asked for; NVML's "used" says what the device
actually had taken (context, other libraries, fragmentation) and is what decides whether a model
fits; host RSS is the only counter on a CPU. Each is labelled by name in the records.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _why(exc: BaseException) -> str:
    """An exception in one line, its type first (NVML's say which error: NVMLError_NotFound)."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def uuid_digits(uuid: Any) -> str:
    """The 32 hex digits of a device UUID in either library's spelling: NVML's `GPU-...` and
    `MIG-...`, torch's bare 8-4-4-4-12 form (`get_device_properties(i).uuid`)."""
    text = _text(uuid).strip().lower()
    for prefix in ("gpu-", "mig-"):
        text = text.removeprefix(prefix)
    return text.replace("-", "")


def match_uuid(cuda_uuid: Any, nvml_uuids: Sequence[str]) -> int:
    """Position in `nvml_uuids` of the device CUDA knows as `cuda_uuid`.

    CUDA and NVML number devices differently (CUDA fastest first unless CUDA_DEVICE_ORDER is
    PCI_BUS_ID, NVML by its own enumeration), and CUDA_VISIBLE_DEVICES renumbers CUDA's: only
    the UUID names the same device in both. LookupError when no device (or more than one)
    has it.
    """
    wanted = uuid_digits(cuda_uuid)
    found = [i for i, u in enumerate(nvml_uuids) if uuid_digits(u) == wanted]
    if len(found) != 1 or len(wanted) != 32:
        what = "no" if not found else f"{len(found)}"
        raise LookupError(
            f"{what} NVML device has the UUID {_text(cuda_uuid)!r} of the CUDA device "
            f"(NVML lists {', '.join(nvml_uuids) or 'no device'})"
        )
    return found[0]


@dataclass(frozen=True)
class NvmlEntry:
    """One device NVML reads: a whole GPU, or a MIG instance of one (a CUDA device of its own)."""

    label: str  # NVML's index, "2" or "2/mig 1"
    uuid: str  # NVML's spelling: GPU-..., MIG-...
    handle: Any


def nvml_devices(nvml: Any) -> list[NvmlEntry]:
    """Every GPU NVML sees and, on a GPU in MIG mode, each of its MIG instances."""
    out: list[NvmlEntry] = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        out.append(NvmlEntry(str(index), _text(nvml.nvmlDeviceGetUUID(handle)), handle))
        try:
            mig_on = nvml.nvmlDeviceGetMigMode(handle)[0] == nvml.NVML_DEVICE_MIG_ENABLE
        except nvml.NVMLError:  # NotSupported: a GPU without MIG
            mig_on = False
        if not mig_on:
            continue
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError:  # NotFound: an empty slot
                continue
            out.append(NvmlEntry(f"{index}/mig {slot}", _text(nvml.nvmlDeviceGetUUID(mig)), mig))
    return out


def cuda_uuid(device: torch.device) -> str:
    """CUDA's UUID of `device` (initialises CUDA in this process)."""
    return str(torch.cuda.get_device_properties(device).uuid)


class NvmlDevice:
    """NVML's view of one device: memory in use and the energy counter."""

    def __init__(self, nvml: Any, entry: NvmlEntry) -> None:
        self._nvml = nvml
        self.entry = entry
        self.handle = entry.handle
        self.energy_error: str | None = None
        self.name: str | None = None
        with suppress(Exception):  # a name is for people; a MIG handle may not give one
            self.name = _text(nvml.nvmlDeviceGetName(entry.handle))

    def used_bytes(self) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def total_energy_j(self) -> float | None:
        """Joules since the driver loaded, or None where the device has no energy counter
        (MIG instances, older GPUs); `energy_error` then says NVML's reason."""
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0
        except self._nvml.NVMLError as exc:
            self.energy_error = _why(exc)
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

    NVML on a CUDA device, in two steps. Created before the process has a CUDA context, the
    sampler reads what every NVML device has in use (the baseline must not contain the cell's
    own context). `attach()`, once CUDA runs, asks CUDA for its device's UUID and keeps the NVML
    device with the same UUID, and that device's figure from before as the baseline. Whatever
    fails on the way (no NVML library, a device NVML cannot match, a read that raises in the
    thread) leaves the NVML counters out and its reason in `nvml_error`; a thread that dies
    says why in `sampler_error`: records carry both (`problems()`), never a silent gap.
    """

    device: torch.device
    interval_s: float = 0.005
    nvml: NvmlDevice | None = None
    nvml_error: str | None = None
    sampler_error: str | None = None
    _peaks: _Peaks = field(default_factory=_Peaks)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _devices: list[NvmlEntry] = field(default_factory=list)
    _used_before: dict[str, int] = field(default_factory=dict)
    _baseline: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._baseline = {"host_rss_bytes": self._process.memory_info().rss}
        if self.device.type == "cuda" and self.nvml is None:
            self._read_every_device()

    def _read_every_device(self) -> None:
        try:
            import pynvml

            self._nvml_module = pynvml
            pynvml.nvmlInit()
            self._devices = nvml_devices(pynvml)
            self._used_before = {
                d.uuid: int(pynvml.nvmlDeviceGetMemoryInfo(d.handle).used) for d in self._devices
            }
        except Exception as exc:
            self.nvml_error = f"NVML unreadable before the cell's CUDA context: {_why(exc)}"

    def attach(self) -> None:
        """Match the CUDA device (its context now exists) to its NVML device, by UUID."""
        if self.device.type != "cuda" or self.nvml is not None or self.nvml_error is not None:
            return
        uuid = cuda_uuid(self.device)
        try:
            entry = self._devices[match_uuid(uuid, [d.uuid for d in self._devices])]
        except LookupError as exc:
            self.nvml_error = f"{self.device}: {exc}"
            return
        self.nvml = NvmlDevice(self._nvml_module, entry)
        self._baseline["nvml_used_bytes"] = self._used_before[entry.uuid]

    def describe(self) -> dict[str, Any] | None:
        """The NVML device the counters come from, or why there is none (None on a CPU)."""
        if self.device.type != "cuda":
            return None
        out: dict[str, Any] = {"uuid": None, "index": None, "name": None}
        if self.nvml is not None:
            entry = self.nvml.entry
            out.update(uuid=entry.uuid, index=entry.label, name=self.nvml.name)
            out["energy_error"] = self.nvml.energy_error
        return {**out, **self.problems()}

    def problems(self) -> dict[str, str]:
        """`nvml_error` and `sampler_error` as they stand, for a record (absent when fine)."""
        out = {"nvml_error": self.nvml_error, "sampler_error": self.sampler_error}
        return {k: v for k, v in out.items() if v is not None}

    def _nvml_used(self) -> int | None:
        """NVML's figure now; a failing read drops NVML for the rest of the cell, with why."""
        nvml = self.nvml
        if nvml is None:
            return None
        try:
            return nvml.used_bytes()
        except Exception as exc:
            self.nvml = None
            self.nvml_error = f"NVML read failed during the cell: {_why(exc)}"
            return None

    def _read(self) -> tuple[int | None, int]:
        return self._nvml_used(), self._process.memory_info().rss

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                used, rss = self._read()
                with self._lock:
                    if used is not None:
                        self._peaks.nvml_used = max(self._peaks.nvml_used, used)
                    self._peaks.host_rss = max(self._peaks.host_rss, rss)
                    self._peaks.samples += 1
                self._stop.wait(self.interval_s)
        except Exception as exc:  # peaks are then the phases' first and last reads only
            self.sampler_error = f"the sampling thread stopped: {_why(exc)}"

    def start(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def baseline(self) -> dict[str, int]:
        """Host RSS and the matched device's NVML figure before the cell's CUDA context."""
        return dict(self._baseline)

    def begin_phase(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        used, rss = self._read()
        with self._lock:
            self._peaks = _Peaks(nvml_used=used or 0, host_rss=rss, samples=1)

    def end_phase(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        used, rss = self._read()
        with self._lock:
            peaks = self._peaks
            peaks.nvml_used = max(peaks.nvml_used, used or 0)
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
