"""The local executor: the cells one at a time on this machine, each in a fresh process.

Each cell's process is forked from the warm server of bench.runner.processes (or `spawn`ed when
that server cannot serve it) and runs bench.runner.worker.run_cell; this process follows its
events on a pipe and shows them. A cell whose process dies leaves records saying so and the
sweep goes on to the next cell. A stop request (bench.runner.interrupt) ends the cell in
flight with nothing recorded for it; a cell that could not write the folder stops the sweep.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.progress import Progress

from bench.results import IMAGES, RunFolderWriteError, remove_temporary_files
from bench.runner.executor_base import (
    CellProgress,
    Executor,
    Sweep,
    process_crash,
    progress_columns,
)
from bench.runner.interrupt import StopRequests
from bench.runner.plan import CellJob, cell_job
from bench.runner.processes import born_ignoring_sigint, relay_events, stop_process
from bench.runner.worker import WRITE_FAILED_EXIT, run_cell


class LocalExecutor(Executor):
    """One cell at a time here, each in a fresh process (forked warm)."""

    name = "local"

    def run(self, sweep: Sweep) -> bool:
        _, todo, have_cell_record = sweep.owed()
        say = sweep.say()
        plain = not sweep.console.is_terminal
        with Progress(
            *progress_columns(), console=sweep.console, transient=False, disable=plain
        ) as progress:
            overall = progress.add_task("all images", total=sum(len(v) for v in todo.values()))
            for cell in sweep.manifest["cells"]:
                cell_id = cell["cell_id"]
                if cell_id not in todo:
                    continue
                owed = todo[cell_id]
                unavailable = sweep.record_unavailable(cell, have_cell_record)
                if unavailable is not None:
                    progress.advance(overall, len(owed))
                    say(f"{cell_id}: unavailable ({unavailable})")
                    continue
                task = progress.add_task(f"{cell_id}: loading", total=len(owed))
                line = CellProgress(progress, task, overall, say, cell, len(owed))
                job = cell_job(
                    sweep.plan, sweep.manifest, cell, owed, cell_id not in have_cell_record
                )
                job = replace(job, run_dir=str(sweep.run_dir), driver_pid=os.getpid())
                exitcode = _CellFollower(sweep.context, job, line, sweep.stop).run()
                if exitcode != 0:
                    sweep.record_crash(cell, owed, process_crash(exitcode, line.phase))
                line.finish()
        return bool(todo)


@dataclass
class _CellFollower:
    """Start one cell's process, show its events, and stop it on request."""

    context: Any
    job: CellJob
    line: CellProgress
    stop: StopRequests
    write_failed: str | None = None

    def run(self) -> int:
        """The process's exit code; KeyboardInterrupt when stopped by a signal,
        RunFolderWriteError when the cell could not write the folder."""
        receive, send = self.context.Pipe(duplex=False)
        name = f"cell-{self.job.cell['cell_id']}"
        process = self.context.Process(target=run_cell, args=(self.job, send), name=name)
        with self.stop.deferred():
            try:
                # A forked cell inherits the server's ignored SIGINT; a `spawn`ed one must be
                # born with it.
                spawned = self.context.get_start_method() == "spawn"
                with born_ignoring_sigint() if spawned else contextlib.nullcontext():
                    process.start()
                self.stop.follow(process.pid)
                send.close()  # the child has its own end; EOF on ours once it is gone
                relay_events(receive, process, self._show, lambda: not self.stop.requested)
                if self.stop.requested:
                    self._stop_process(process)
            except BaseException:
                self._stop_process(process)
                raise
            finally:
                self.stop.follow(None)
                receive.close()
        process.join()
        if self.stop.requested:
            raise KeyboardInterrupt
        if process.exitcode == WRITE_FAILED_EXIT and self.write_failed is not None:
            raise RunFolderWriteError(self.write_failed)
        return process.exitcode

    def _show(self, event: dict[str, Any]) -> None:
        if event["kind"] == "write_failed":
            self.write_failed = event["message"]
        else:
            self.line.show(event)

    def _stop_process(self, process: Any) -> None:
        """End the cell now; what it was writing is whole or absent, and absent stays missing."""
        if process.pid is None:
            return
        stop_process(process)
        cell_images = Path(self.job.run_dir) / IMAGES / self.job.cell["cell_id"]
        if cell_images.is_dir():
            remove_temporary_files(cell_images)
