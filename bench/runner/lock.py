"""One writer per run folder: an advisory lock on a file in the folder, held for the run's life.

Two `bench run --resume` on one folder would both run the missing cells: duplicate records,
overwritten images and timings taken while the two competed for the machine. `flock` locks
belong to the open file, so the kernel releases them when the holder dies, however it dies: a
killed run never leaves a folder locked. The lock file itself stays (unlinking it would let a
third process lock a new file while the second still holds the old one); it holds who has it,
for the message a second writer gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from contextlib import suppress
from pathlib import Path

from bench.errors import UserInputError
from bench.results import RunFolderWriteError, utc_now

LOCK_FILE = "run.lock"


class RunFolderBusy(UserInputError):
    """Another process is writing this run folder."""


class RunFolderLock:
    """`with RunFolderLock(run_dir):` — raises RunFolderBusy at once if another process has it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self._descriptor: int | None = None

    def acquire(self) -> RunFolderLock:
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RunFolderWriteError.from_os_error(self.path, exc) from exc
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(descriptor)
            os.close(descriptor)
            raise RunFolderBusy(
                f"{self.run_dir}: another bench run is writing this folder ({holder}); "
                "wait for it to end or stop it, then resume"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor
        holder = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": utc_now()}
        )
        # Who holds the lock is only for the message above: a full disk must not stop the run.
        with suppress(OSError):
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, holder.encode() + b"\n", 0)
        return self

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the only descriptor releases the lock
            self._descriptor = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *_exc_info: object) -> None:
        self.release()


def _describe_holder(descriptor: int) -> str:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"
