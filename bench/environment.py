"""What a run ran on: library versions, OS, CPU, GPU, driver.

A regression check is only meaningful between runs on the same stack, so every manifest carries
this. Environment variables are copied only from an allow-list: tokens and other secrets that
live in the environment must never reach a file that is shared.
"""

from __future__ import annotations

import os
import platform
from contextlib import suppress
from importlib import metadata
from typing import Any

import psutil

PACKAGES = (
    "bench",
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "gguf",
    "safetensors",
    "numpy",
    "torchmetrics",
    "nvidia-ml-py",
)
SAFE_ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "PYTORCH_CUDA_ALLOC_CONF",
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BENCH_CACHE_DIR",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_info() -> list[dict[str, Any]]:
    """One entry per visible CUDA device, with NVML's driver view where available."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus: list[dict[str, Any]] = []
    driver = None
    with suppress(Exception):
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(
            {
                "index": index,
                "name": props.name,
                "total_memory_bytes": int(props.total_memory),
                "compute_capability": f"{props.major}.{props.minor}",
                "uuid": str(getattr(props, "uuid", "")),
                "driver": driver,
            }
        )
    return gpus


def collect_environment() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "cpu": {
            "model": _cpu_model(),
            "logical_cores": psutil.cpu_count(logical=True),
            "torch_threads": torch.get_num_threads(),
        },
        "host_memory_bytes": psutil.virtual_memory().total,
        "cuda": {
            "available": torch.cuda.is_available(),
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        },
        "gpus": gpu_info(),
        "env": {k: os.environ[k] for k in SAFE_ENV_VARS if k in os.environ},
    }


def quiet_library_environment() -> None:
    """Library chatter (info logs, hub progress bars) would bury the harness's own output.

    Set as defaults only, so a user who wants it can set the variables; child processes inherit.
    """
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def quiet_library_output() -> None:
    """The environment defaults plus the progress bars and deprecation notices the libraries
    print while loading and saving (for processes that import them anyway)."""
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    quiet_library_environment()
    warnings.filterwarnings("ignore", category=FutureWarning)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
