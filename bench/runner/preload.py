"""Imported once by the cell forkserver, before it forks any cell: the imports every cell pays.

A cell is one fresh process so that peak-memory counters, the CUDA context and allocator caches
start from nothing. Importing torch, diffusers and transformers is not part of that state, yet a
`spawn`ed interpreter paid seconds for it per cell (even for cells that fail at once on a CPU).
The forkserver imports this module and then forks each cell from that warm image: the cell is a
new process with its own address space, copy-on-write, that starts with the modules in place.

Why the forked cells can still use CUDA: the server never initialises CUDA, neither torch's
lazy state (`torch.cuda.is_initialized()` stays False here, so torch's fork guard does not mark
the children "bad fork") nor the driver. The driver is the subtle part: the default
`torch.cuda.is_available()` calls `cudaGetDeviceCount`, which runs `cuInit`, and a child forked
after `cuInit` cannot use the GPU. Libraries may ask `is_available()` while they import, so the
imports run with `PYTORCH_NVML_BASED_CUDA_CHECK=1`, which makes torch answer from NVML without
touching the driver (NVML holds no CUDA context and is safe across fork); the variable is then
restored, so a cell asks CUDA itself. Idle native thread pools that imports start (OpenBLAS)
shut themselves down around fork through their own `pthread_atfork` handlers.

Ctrl-C: a terminal sends SIGINT to every process of its foreground group, cells included. A
cell must not turn it into a KeyboardInterrupt (that would look like a failure); the parent
decides what an interruption means and stops the cell itself. The server already ignores
SIGINT and its children inherit the disposition this module sets, so there is no moment in a
cell's life when Ctrl-C can raise in it.
"""

from __future__ import annotations

import os
import signal
from contextlib import suppress

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
MODULES = (
    "bench.cli",  # what a child imports as `__mp_main__` when the parent is the `bench` script
    "bench.config",
    "bench.models.loading",
    "bench.runner.memory",
    "bench.runner.timing",
    "bench.runner.worker",
    "bench.metrics.noise_floor",
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


def warm_up() -> None:
    """Import what cells use; never raises (a cell then imports what is missing itself)."""
    import importlib

    previous = os.environ.get(NVML_CHECK)
    os.environ[NVML_CHECK] = "1"
    try:
        with suppress(Exception):
            from bench.environment import quiet_library_environment, quiet_library_output

            quiet_library_environment()  # before the libraries read their verbosity variables
            quiet_library_output()
        for name in MODULES:
            with suppress(Exception):
                importlib.import_module(name)
        with suppress(Exception):
            import diffusers

            for attribute in DIFFUSERS_CLASSES:
                getattr(diffusers, attribute)
        with suppress(Exception):
            import transformers

            for attribute in TRANSFORMERS_CLASSES:
                getattr(transformers, attribute)
        with suppress(Exception):
            _thread_only_progress_lock()
    finally:
        if previous is None:
            os.environ.pop(NVML_CHECK, None)
        else:
            os.environ[NVML_CHECK] = previous
    signal.signal(signal.SIGINT, signal.SIG_IGN)


warm_up()
