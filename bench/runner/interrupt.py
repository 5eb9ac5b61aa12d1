"""Ctrl-C and SIGTERM during a sweep: the first stops it cleanly, the second at once.

An interrupted cell or image is *missing*, never *failed*: cells ignore SIGINT
(bench.runner.preload), the parent stops the cell process itself, writes nothing about it, and
leaves the folder for `--resume`, which runs what is missing. Every write of a run folder is
whole or absent (bench.results), so stopping at any moment leaves a resumable folder; the
second signal therefore needs no cleanup at all: it kills the cell and leaves at once, without
the interpreter's exit handlers (joining processes, flushing queues) that a user who pressed
Ctrl-C twice does not want to wait for or see tracebacks from.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """The sweep stopped on a signal before it finished; `run_dir` is resumable."""

    def __init__(self, run_dir: Path | None, signum: int, missing: int | None = None) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.run_dir = run_dir
        self.signum = signum
        self.missing = missing  # images still owed, when known

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequests:
    """Signal handling of one sweep's parent process (installed by the CLI, main thread only).

    First SIGINT/SIGTERM: inside `deferred()` (while a cell process is followed) it only sets
    `signum`, and the follower stops the cell; elsewhere it raises KeyboardInterrupt as Python
    would. Second: kills the followed cell, calls `on_second(self)` (say where the folder is)
    and ends the process with 128 + the first signal's number.
    Without `install()`, nothing is handled and Ctrl-C raises KeyboardInterrupt as usual.
    """

    def __init__(self, on_second: Callable[[StopRequests], None] | None = None) -> None:
        self.on_second = on_second
        self.signum: int | None = None
        self.run_dir: Path | None = None  # set by the sweep once its folder exists
        self._count = 0
        self._deferred = 0
        self._child_pid: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) == signal.SIG_IGN:
                    continue  # started immune to it (nohup, a background job): stay so
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def __enter__(self) -> StopRequests:
        return self.install()

    def __exit__(self, *_exc_info: object) -> None:
        self.restore()

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A first signal inside only sets `signum`; the code inside checks `requested`."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1

    def follow(self, pid: int | None) -> None:
        """The cell process that a second signal kills (None once it has ended)."""
        self._child_pid = pid

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self._count += 1
        if self._count == 1:
            self.signum = signum
            if not self._deferred:
                raise KeyboardInterrupt
            return
        if self._child_pid is not None:
            with suppress(OSError):
                os.kill(self._child_pid, signal.SIGKILL)
        if self.on_second is not None:
            with suppress(Exception):
                self.on_second(self)
        os._exit(128 + (self.signum or signum))
