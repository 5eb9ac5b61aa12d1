"""One cell in one fresh process: load, apply offload, warm up, generate, measure, record
(bench.runner.cell_phases, which only the cell's process imports).

Runs in its own child (forked from the warm server of bench.runner.processes, or `spawn`ed) so
peak-memory counters, the CUDA context and allocator caches start from nothing and never leak
into the next cell. Every record is appended and flushed the moment it exists; the parent only
reads the file and the event pipe.

What becomes a record and what does not: an exception of the measured work (loading, offload,
warm-up, a generation) is a failure and is recorded. An interruption is not a result: SIGINT is
ignored here and the parent stops the process itself, so nothing is written for the image in
flight, which stays missing for `--resume`. Nor is a run folder that cannot be written (a full
disk): the cell stops, says so on the pipe and exits with WRITE_FAILED_EXIT, without recording
anything about the cell, whose measurements were fine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any

from bench.library_output import quiet_library_output
from bench.results import RunFolderWriteError
from bench.runner.plan import CellJob

WRITE_FAILED_EXIT = 75  # EX_TEMPFAIL: the run folder could not be written; try again later
PARENT_GONE_EXIT = 3  # nobody is left to read it: the sweep's process ended first


def _exit_with_parent() -> None:
    """End this process if the sweep's process dies, so a killed run leaves no writer behind.

    Watched through multiprocessing's parent sentinel, which closes when the process that
    started this cell ends; the parent pid would not do: a forked cell's parent is the server.
    """
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(PARENT_GONE_EXIT)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_cell(job: CellJob, events: Any) -> None:
    """Entry point of the child process. Failures become records; a folder that cannot be
    written ends the process with WRITE_FAILED_EXIT after saying why on `events`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already so when forked from the warm server
    _exit_with_parent()
    try:
        _run_cell(job, events)
    except RunFolderWriteError as exc:
        with contextlib.suppress(OSError):
            events.send(
                {"kind": "write_failed", "cell_id": job.cell["cell_id"], "message": str(exc)}
            )
        sys.exit(WRITE_FAILED_EXIT)


def _run_cell(job: CellJob, events: Any) -> None:
    import bench.runner.preload  # noqa: F401  (torch, diffusers: a spawned cell imports them now)

    quiet_library_output()
    from bench.runner.cell_phases import run_phases  # torch: never in the sweep's process

    cell_id = job.cell["cell_id"]

    def emit(kind: str, **payload: Any) -> None:
        try:
            events.send({"kind": kind, "cell_id": cell_id, **payload})
        except OSError:  # the sweep's process is gone: not a failure of the cell (see above)
            os._exit(PARENT_GONE_EXIT)

    run_phases(job, emit)
