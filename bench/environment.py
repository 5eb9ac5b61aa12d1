"""What a run ran on: library versions, OS, CPU, GPU, driver.

A regression check is only meaningful between runs on the same stack, so every manifest carries
this. Environment variables are copied only from an allow-list: tokens and other secrets that
live in the environment must never reach a file that is shared.

A run may also happen outside the project's own environment (the GPU check runs under a bare
machine's python3 with carried wheels first on PYTHONPATH and the checkout itself on it), where
the project's pins do not apply: then the versions alone do not say what ran, so the manifest
also names the interpreter, the folder each package was imported from, and the checkout's commit.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from contextlib import suppress
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from packaging.utils import canonicalize_name

from bench.backends import backend_packages

PACKAGES = tuple(
    dict.fromkeys(
        (
            "bench",
            "torch",
            "diffusers",
            "transformers",
            "accelerate",
            "safetensors",
            "numpy",
            "torchmetrics",
            "nvidia-ml-py",
            # every backend's own libraries (gguf, torchao, bitsandbytes, ...), None when absent
            *backend_packages(),
        )
    )
)
# Where each package was imported from, with its version: PACKAGES (whose versions `bench
# compare` diffs between runs) and the others a run depends on, which are recorded here only.
SOURCE_PACKAGES = (
    *PACKAGES,
    "huggingface-hub",
    "pydantic",
    "pydantic-core",
    "tokenizers",
    "typing-extensions",
    "pandas",
    "scipy",
    "pillow",
)
# Import names of the distributions above whose names differ from them.
_MODULES = {
    "nvidia-ml-py": "pynvml",
    "optimum-quanto": "optimum.quanto",
    "huggingface-hub": "huggingface_hub",
    "pillow": "PIL",
    "typing-extensions": "typing_extensions",
}
SAFE_ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "PYTORCH_CUDA_ALLOC_CONF",
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BENCH_CACHE_DIR",
    "PYTHONPATH",
    "BENCH_SOURCE_COMMIT",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def installed_distributions() -> dict[str, str]:
    """{canonical name: version} of every distribution this interpreter sees, first on the path
    winning: in a `bench matrix` environment, what its resolution moved, over the base."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonicalize_name(name), dist.version)
    return dict(sorted(out.items()))


def _origin(package: str) -> str | None:
    """The folder (or file) the package is imported from here, without importing it."""
    with suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(_MODULES.get(package, package.replace("-", "_")))
        if spec is not None and spec.origin:
            origin = Path(spec.origin)
            return str(origin.parent if origin.name == "__init__.py" else origin)
    return None


def _source_checkout() -> dict[str, Any]:
    """Where the bench package in use lives and, in a git checkout, its commit.

    `bench` run from a checkout on PYTHONPATH has no installed version; the commit says which
    code ran ("-dirty" when the tree had uncommitted changes). A copy without its .git (a
    working tree sent to another machine) can be told its commit in BENCH_SOURCE_COMMIT.
    """
    root = Path(__file__).resolve().parents[1]
    commit, told = None, os.environ.get("BENCH_SOURCE_COMMIT")
    if (root / ".git").exists():
        with suppress(OSError, subprocess.SubprocessError):
            result = subprocess.run(
                ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            commit = result.stdout.strip() or None
    if commit is None and told:
        return {"path": str(root), "git_commit": told, "commit_from": "BENCH_SOURCE_COMMIT"}
    return {"path": str(root), "git_commit": commit, "commit_from": "git" if commit else None}


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
        "python_executable": sys.executable,
        "packages": {name: _version(name) for name in PACKAGES},
        # Everything else installed, so a comparison names every package that changed.
        "distributions": installed_distributions(),
        "package_sources": {
            name: {"version": _version(name), "path": _origin(name)} for name in SOURCE_PACKAGES
        },
        "source": _source_checkout(),
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
