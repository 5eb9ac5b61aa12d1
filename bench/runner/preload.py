"""Imported once by the cell forkserver, before it forks any cell: the imports every cell pays.

A cell is one fresh process so that peak-memory counters, the CUDA context and allocator caches
start from nothing. Importing torch, diffusers and transformers is not part of that state, yet a
`spawn`ed interpreter paid seconds for it per cell (even for cells that fail at once on a CPU).
The forkserver imports this module and then forks each cell from that warm image: the cell is a
new process with its own address space, copy-on-write, that starts with the modules in place.
So do the caches libraries fill on their first load (`FIRST_USES`: transformers' checkpoint
conversion table, the modules diffusers' loaders look classes up in): filled here once, they are
no part of any cell's load time. The pipeline itself is never loaded here: loading it is what a
cell measures.

Why the forked cells can still use CUDA: the server never initialises CUDA, neither torch's
lazy state (`torch.cuda.is_initialized()` stays False here, so torch's fork guard does not mark
the children "bad fork") nor the driver. The driver is the subtle part: the default
`torch.cuda.is_available()` calls `cudaGetDeviceCount`, which runs `cuInit`, and a child forked
after `cuInit` cannot use the GPU. Libraries may ask `is_available()` while they import, so the
imports run with `PYTORCH_NVML_BASED_CUDA_CHECK=1`, which makes torch answer from NVML without
touching the driver (NVML holds no CUDA context and is safe across fork); the variable is then
restored, so a cell asks CUDA itself. Idle native thread pools that imports start (OpenBLAS)
shut themselves down around fork through their own `pthread_atfork` handlers.

The NVML answer covers only `is_available()` and `device_count()`. Two imports ask more:
bitsandbytes (installed by `.[backends]`, imported by diffusers' quantizers) calls
`torch.cuda.get_device_capability()` at import (cuda_specs.get_compute_capabilities, only to
see that a capability exists before it loads its CUDA library), and diffusers' GGUF utils do
under `DIFFUSERS_GGUF_CUDA_KERNELS=true` (is it at least 7); torch answers by initialising CUDA
(get_device_properties runs `_lazy_init`). While the server imports, that one function is
answered from NVML instead (`_capability_from_nvml`), and restored before any cell is forked.
What is left, torch's NVML count giving up on a `MIG-` entry in CUDA_VISIBLE_DEVICES and running
`cudaGetDeviceCount`, or any other library's CUDA call, the server finds after warming up
(`CUDA_IN_SERVER`: torch's own flag and the driver's state) and says; then
bench.runner.processes.usable_context starts cells `spawn`ed instead of forked, each importing
the libraries itself.

Ctrl-C: a terminal sends SIGINT to every process of its foreground group, cells included. A
cell must not turn it into a KeyboardInterrupt (that would look like a failure); the parent
decides what an interruption means and stops the cell itself. The server already ignores
SIGINT and its children inherit the disposition this module sets, so there is no moment in a
cell's life when Ctrl-C can raise in it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial

from bench.library_output import quiet_library_environment, quiet_library_output

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
# The pipeline classes of the families the harness ships (FLUX), looked up through diffusers'
# lazy modules the way `DiffusionPipeline.from_pretrained` finds them.
DIFFUSERS_CLASSES = (
    "DiffusionPipeline",
    "FluxPipeline",
    "FluxTransformer2DModel",
    "AutoencoderKL",
    "FlowMatchEulerDiscreteScheduler",
    "GGUFQuantizationConfig",
)
TRANSFORMERS_CLASSES = ("CLIPTextModel", "CLIPTokenizer", "T5EncoderModel", "T5TokenizerFast")
IMPORTED_AT_LOAD = (
    "bench.cli",  # what a child imports as `__mp_main__` when the parent is the `bench` script
    "bench.config",
    "bench.models.loading",
    "bench.runner.memory",
    "bench.runner.timing",
    "bench.runner.worker",
    "bench.metrics.noise_floor",
    "bench.runner.cell_phases",
    "diffusers.quantizers.gguf.gguf_quantizer",
    "gguf",
    "PIL.PngImagePlugin",
    "psutil",
    "pynvml",
)


def _thread_only_progress_lock() -> None:
    """diffusers' progress bars are tqdm's, and tqdm's first bar creates a multiprocessing lock:
    a named semaphore that a cell stopped on Ctrl-C leaves behind, and that the resource tracker
    then reports as leaked when bench exits. A cell is one process: a thread lock is enough."""
    import threading

    import tqdm

    tqdm.tqdm.set_lock(threading.RLock())


CUDA_NOT_INITIALIZED = 3  # CUresult of a driver call made before cuInit


def _driver_initialised() -> bool:
    """Whether this process ran `cuInit`, asked without running it.

    Only a process that has the driver library mapped can have; there a driver call made before
    `cuInit` returns CUDA_ERROR_NOT_INITIALIZED and initialises nothing.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            if "libcuda.so" not in maps.read():
                return False
    except OSError:
        return False
    try:
        driver = ctypes.CDLL("libcuda.so.1")  # already mapped: the same handle, nothing loaded
    except OSError:
        return False
    count = ctypes.c_int(0)
    return int(driver.cuDeviceGetCount(ctypes.byref(count))) != CUDA_NOT_INITIALIZED


def cuda_initialised() -> str | None:
    """What of CUDA this process holds that a forked child could not use, or None."""
    torch = sys.modules.get("torch")
    with suppress(Exception):
        if torch is not None and torch.cuda.is_initialized():
            return "torch.cuda.is_initialized() is True"
    if _driver_initialised():
        return "the CUDA driver is initialised (cuInit ran)"
    return None


@contextmanager
def _capability_from_nvml() -> Iterator[None]:
    """`torch.cuda.get_device_capability` answered by NVML for the duration (see the module).

    NVML's `nvmlDeviceGetCudaComputeCapability` holds no CUDA state. The highest capability
    of the machine's GPUs is given for any device: bitsandbytes takes the highest, diffusers'
    GGUF utils compare it with 7 (every GPU since Volta). Without NVML nothing is replaced.
    """
    highest: tuple[int, int] | None = None
    with suppress(Exception):  # no NVML, no GPU: torch's own stays (it has nothing to start)
        import pynvml
        import torch

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        highest = tuple(max(pynvml.nvmlDeviceGetCudaComputeCapability(h) for h in handles))
    if highest is None:
        yield
        return
    original = torch.cuda.get_device_capability
    torch.cuda.get_device_capability = lambda device=None: highest
    try:
        yield
    finally:
        torch.cuda.get_device_capability = original


def _step(name: str, do: Callable[[], object], culprit: list[str]) -> None:
    """One import of the warm-up (a failure leaves it to the cell); the first whose end finds
    CUDA initialised is named in `culprit`."""
    with suppress(Exception):
        do()
    if not culprit:
        state = cuda_initialised()
        if state is not None:
            culprit.append(f"{name}: {state}")


def warm_up() -> str | None:
    """Import what cells use; never raises (a cell then imports what is missing itself).

    Returns None, or why a cell forked from this process could not use CUDA: the first
    import after which CUDA was found initialised, and how.
    """
    import importlib

    culprit: list[str] = []
    before = cuda_initialised()
    if before is not None:
        culprit.append(f"before the warm-up: {before}")
    previous = os.environ.get(NVML_CHECK)
    os.environ[NVML_CHECK] = "1"
    try:
        with _capability_from_nvml():
            _step("bench.library_output", _quiet_libraries, culprit)
            for name in IMPORTED_AT_LOAD:
                _step(name, partial(importlib.import_module, name), culprit)
            _step("diffusers' classes", partial(_classes, "diffusers", DIFFUSERS_CLASSES), culprit)
            _step(
                "transformers' classes",
                partial(_classes, "transformers", TRANSFORMERS_CLASSES),
                culprit,
            )
            _step("tqdm", _thread_only_progress_lock, culprit)
            for name, first_use in FIRST_USES:
                _step(name, first_use, culprit)
    finally:
        if previous is None:
            os.environ.pop(NVML_CHECK, None)
        else:
            os.environ[NVML_CHECK] = previous
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return culprit[0] if culprit else None


def _quiet_libraries() -> None:
    quiet_library_environment()  # before the libraries read their verbosity variables
    quiet_library_output()


def _classes(module: str, names: tuple[str, ...]) -> None:
    """The classes cells load, looked up through the library's lazy module."""
    import importlib

    library = importlib.import_module(module)
    for name in names:
        getattr(library, name)


def _loader_lookups() -> None:
    """The classes diffusers' loaders look up on every load, whatever the pipeline: each base
    class a component may derive from (`from_pretrained`, ALL_IMPORTABLE_CLASSES: the guiders
    among them) and each class `from_single_file` can load (the ControlNets among them, for a
    GGUF transformer). Each look-up imports its module; here once, not in every cell."""
    import diffusers
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES
    from diffusers.pipelines.pipeline_loading_utils import ALL_IMPORTABLE_CLASSES

    for name in [*ALL_IMPORTABLE_CLASSES, *SINGLE_FILE_LOADABLE_CLASSES]:
        getattr(diffusers, name, None)


def _conversion_mapping() -> None:
    """transformers builds its table of checkpoint conversions (about a thousand regular
    expressions compiled) on the first model a process loads, and keeps it: built here, a
    cell's text encoders load without it (what `FIRST_USES` saves a cell: docs/measurements.md)."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    get_checkpoint_conversion_mapping("t5")


def _image_formats() -> None:
    """Pillow registers its common formats (BMP, GIF, JPEG, PPM) on the first image saved."""
    from PIL import Image

    Image.preinit()


# What a cell's first load, generation and saved image pay once per process beyond imports:
# caches the libraries fill on first use, which a forked cell inherits filled.
FIRST_USES: tuple[tuple[str, Callable[[], None]], ...] = (
    ("diffusers' loader look-ups", _loader_lookups),
    ("transformers' conversion mapping", _conversion_mapping),
    ("Pillow's formats", _image_formats),
)


# Read by bench.runner.processes in a child forked from the server: the server's own answer.
CUDA_IN_SERVER: str | None = warm_up()
