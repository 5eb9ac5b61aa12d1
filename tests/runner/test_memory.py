"""NVML and CUDA name devices differently: the memory sampler matches them by UUID, and every
way NVML can fail is a reason in the record, not a silent gap."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
import torch

from bench.runner.cell_phases import _after_failure
from bench.runner.memory import MemorySampler, match_uuid, uuid_digits

# Two GPUs as nvmlDeviceGetUUID spells them (pynvml 13 returns str; older ones bytes), in NVML's
# order, and the second as torch spells it: str(torch.cuda.get_device_properties(i).uuid).
H100 = "GPU-5f2b0c1e-8d4a-4b7e-9c3f-0a1b2c3d4e5f"
L4 = "GPU-a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
L4_AS_TORCH = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
MIG = "MIG-11111111-2222-4333-8444-555555555555"


def test_the_cuda_device_is_found_by_uuid_not_by_position() -> None:
    # CUDA orders fastest first: its cuda:0 is the H100, NVML's index 0 may be the L4.
    assert match_uuid(H100.removeprefix("GPU-"), [L4, H100]) == 1
    assert match_uuid(L4_AS_TORCH, [L4, H100]) == 0
    assert match_uuid(L4_AS_TORCH.upper(), [H100, L4.encode()]) == 1  # bytes from older pynvml
    # A MIG instance is its own CUDA device; NVML lists it beside its GPU.
    assert match_uuid(MIG.removeprefix("MIG-"), [H100, MIG]) == 1
    assert uuid_digits(MIG) == uuid_digits(MIG.removeprefix("MIG-")) == MIG[4:].replace("-", "")


def test_no_match_names_both_sides() -> None:
    with pytest.raises(LookupError) as caught:
        match_uuid(L4_AS_TORCH, [H100])
    assert L4_AS_TORCH in str(caught.value) and H100 in str(caught.value)
    # CUDA_VISIBLE_DEVICES takes a UUID prefix; a prefix is not a device's UUID.
    with pytest.raises(LookupError):
        match_uuid("GPU-a0b1c2d3", [L4, H100])
    with pytest.raises(LookupError, match="2 NVML device"):
        match_uuid(L4_AS_TORCH, [L4, L4])


def test_a_cuda_cell_without_nvml_says_why() -> None:
    sampler = MemorySampler(torch.device("cuda:0"))  # this machine has no NVML library
    assert sampler.nvml is None
    assert sampler.nvml_error.startswith("NVML unreadable before the cell's CUDA context: NVML")
    described = sampler.describe()
    assert described["uuid"] is None and described["nvml_error"] == sampler.nvml_error
    assert set(sampler.baseline()) == {"host_rss_bytes"}  # no NVML figure, not a zero
    assert MemorySampler(torch.device("cpu")).describe() is None


def test_a_sampler_thread_that_dies_says_why() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    sampler = MemorySampler(torch.device("cpu"), interval_s=0.001)
    sampler._process = psutil.Process(child.pid)  # the process it measures ends under it
    sampler.start()
    child.kill()
    child.wait()
    deadline = time.monotonic() + 10
    while sampler.sampler_error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert sampler.sampler_error.startswith("the sampling thread stopped: NoSuchProcess")
    assert sampler.problems() == {"sampler_error": sampler.sampler_error}


def test_cleanup_that_raises_after_a_failure_keeps_the_original_error() -> None:
    error = {"type": "AcceleratorError", "message": "an illegal memory access", "phase": "generate"}

    def synchronize() -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    assert _after_failure(synchronize, error) is None
    assert error["type"] == "AcceleratorError" and error["message"] == "an illegal memory access"
    assert error["cleanup"] == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert _after_failure(lambda: {"samples": 1}, error) == {"samples": 1}
