"""Run the converter's chunks on several cores: worker processes, or in-process for one job.

Processes, not threads: the quantizers' numpy calls release the GIL, but each 64 Ki-weight
piece also runs Python-level bookkeeping (a few hundred small numpy calls per candidate scale)
that holds it, so threads scale worse than processes (measured in docs/gguf.md). Workers are
forked where that is safe (the `bench quantize` command: ~20 ms for all of them, and they
inherit the imported quantizer), else spawned (a fresh interpreter and imports per worker,
~0.3 s of CPU each). The global forkserver is left to the runner, which configures it. At most
two chunks per worker are in flight, so memory stays a few chunks per worker however large the
model is.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Literal

from bench.gguf.chunks import Chunk, convert_chunk
from bench.gguf.errors import ConversionError
from bench.gguf.quants import default_threads

PoolKind = Literal["process", "thread"]
Advance = Callable[[int], None]
Runner = Callable[[str, list[Chunk], Advance], None]

#: Below this many weights the default (``jobs=None``) converts in-process: starting workers
#: costs more than tiny test and demo models take on one core.
AUTO_PARALLEL_MIN_WEIGHTS = 16 << 20


def resolve_jobs(jobs: int | None, chunks: list[Chunk]) -> int:
    """Workers to use: ``jobs`` (None: every usable CPU, or one for small work), never more
    than the CPUs this process may use (docs/limits.md: more workers would only share them,
    each holding its chunks in memory, and ``jobs=100000`` would start as many processes as
    there are chunks) nor more than there are chunks. The summary says how many ran."""
    if jobs is None:
        small = sum(c.n_params for c in chunks) < AUTO_PARALLEL_MIN_WEIGHTS
        jobs = 1 if small else default_threads()
    elif isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConversionError(f"jobs: expected a positive number of workers, got {jobs!r}")
    return max(1, min(jobs, default_threads(), len(chunks)))


@contextmanager
def chunk_runner(jobs: int, kind: PoolKind = "process") -> Iterator[Runner]:
    """A function that converts chunks into a file on ``jobs`` workers, started now.

    Open it before starting threads of your own (a progress bar): the workers are forked on
    entry, while this process may still have a single thread.
    """
    if jobs == 1:
        yield _run_here
        return
    with _executor(kind, jobs) as ex:
        ex.submit(int).result()  # start every worker now (fork: all at once, before threads)

        def run(path: str, chunks: list[Chunk], advance: Advance) -> None:
            _run_pool(ex, jobs, path, chunks, advance)

        yield run


def _run_here(path: str, chunks: list[Chunk], advance: Advance) -> None:
    for c in chunks:
        advance(convert_chunk(path, c))


def _run_pool(ex: Executor, jobs: int, path: str, chunks: list[Chunk], advance: Advance) -> None:
    """Keep two chunks per worker in flight. The first failure is raised after the chunks
    already running have finished (the executor's exit waits for them), so nothing is left
    writing to ``path``; chunks not yet started are dropped."""
    todo = iter(chunks)
    running: set[Future[int]] = set()
    try:
        while True:
            for c in todo:
                running.add(ex.submit(convert_chunk, path, c))
                if len(running) >= 2 * jobs:
                    break
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                advance(f.result())
    except BrokenProcessPool as exc:
        raise BrokenProcessPool(
            "a quantizer worker process died (killed for memory? spawned workers also re-import "
            "the main script, which must guard its code with `if __name__ == '__main__':`); "
            "jobs=1 converts in the calling process"
        ) from exc
    finally:
        for f in running:
            f.cancel()


def _executor(kind: PoolKind, jobs: int) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="bench-gguf")
    if kind != "process":
        raise ConversionError(f"pool: expected 'process' or 'thread', got {kind!r}")
    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=mp.get_context(_start_method()),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


def _die_with_parent(parent: int) -> None:
    """Worker start-up: be killed when the parent dies. A parent killed outright (SIGKILL, the
    OOM killer) cannot shut the pool down, and its workers would otherwise wait forever for
    work; on Linux the kernel sends them SIGKILL instead (``PR_SET_PDEATHSIG``)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _start_method() -> str:
    """``fork`` unless Python threads are running (one may hold a lock the child needs) or
    torch is loaded (its thread pools and a CUDA context are not meant to be forked);
    ``spawn`` then. numpy's OpenBLAS threads are idle and fork-safe (OpenBLAS re-creates
    them after a fork), and the workers never call BLAS.
    """
    if threading.active_count() > 1 or "torch" in sys.modules:
        return "spawn"
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"
