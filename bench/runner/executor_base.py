"""The one interface of the executors, and what they share.

An executor decides where and when a sweep's cells run and how their records reach the run
folder; everything else is the sweep's (bench.runner.executor: validation, preparation, the
manifest, the lock, finishing the run) or the worker's (bench.runner.worker: one cell in one
fresh process, the same whichever executor started it). Each executor is a subclass of
`Executor` listed in the registry of bench.runner.executor_choice, which `--executor` names.

What every executor does alike, and takes from here: the cells still owed (`Sweep.owed`), the
`unavailable` record of a cell whose variant could not be prepared, the records a crashed cell
leaves for what it owed, and one line of progress per cell (`CellProgress`).
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.errors import UserInputError
from bench.results import (
    RECORDS,
    append_jsonl,
    cell_records,
    image_records,
    missing_work,
    read_records,
    record_header,
    utc_now,
)
from bench.runner.interrupt import StopRequests
from bench.runner.plan import RunPlan


class ExecutorUnavailable(UserInputError):
    """`--executor NAME` on an installation without what that executor needs."""


@dataclass
class Sweep:
    """What an executor is handed: the plan, the run folder and its manifest (which it may add
    to, as the Ray executor does), where progress goes, the stop requests it must honour, and
    the context this machine's cell processes start from (bench.runner.processes)."""

    run_dir: Path
    manifest: dict[str, Any]
    plan: RunPlan
    console: Console
    stop: StopRequests
    context: Any = None

    def owed(self) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], set[str]]:
        """The folder's records, the images each cell still owes (cells owing none left out),
        and the cells that have their cell record already."""
        records = read_records(self.run_dir)
        return records, missing_work(self.manifest, records), set(cell_records(records))

    def say(self) -> Callable[[str], None]:
        """A line per event where there is no terminal (CI logs, pipes: a live display shows
        nothing until the end); nothing on a terminal, where the progress bars show it."""
        if self.console.is_terminal:
            return lambda message: None
        return lambda message: self.console.print(message, highlight=False)

    def record_unavailable(self, cell: dict[str, Any], have_cell_record: set[str]) -> str | None:
        """Why the cell cannot run (its variant was not prepared), recorded once; None when it
        can run."""
        unavailable = self.plan.prepared_for(cell).unavailable
        if unavailable is None:
            return None
        if cell["cell_id"] not in have_cell_record:
            stub = cell_stub(self.manifest, cell, "unavailable", unavailable)
            append_jsonl(self.run_dir / RECORDS, [stub])
        return unavailable["message"]

    def record_crash(
        self,
        cell: dict[str, Any],
        owed: list[dict[str, Any]],
        error: dict[str, str],
        origin: dict[str, Any] | None = None,
    ) -> None:
        """Records for what a dead cell owed, instead of silent gaps: a `crashed` cell record
        when it wrote none, else a `failed` record for each image it did not write. `origin`:
        fields the executor adds to every record (where the cell ran)."""
        records = read_records(self.run_dir)
        cell_id = cell["cell_id"]
        stub = {**cell_stub(self.manifest, cell, "crashed", error), **(origin or {})}
        if cell_id not in cell_records(records):
            append_jsonl(self.run_dir / RECORDS, [stub])
            return
        done = image_records(records)
        lost = [
            {**stub, "status": "failed", "kind": "image", **image, "image": None}
            for image in owed
            if (cell_id, image["prompt_id"], image["repeat"]) not in done
        ]
        append_jsonl(self.run_dir / RECORDS, lost)


class Executor(ABC):
    """Runs the cells a sweep still owes, somewhere, into its run folder.

    A subclass names itself (`name`, the value of `--executor`), says which modules it needs
    beyond the harness (`needs`, with `when_missing` telling how to get them) and whether it
    takes an address (`--ray-address`), and implements `run`.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    when_missing: ClassVar[str] = ""
    takes_address: ClassVar[bool] = False

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this executor cannot run on this installation, or None."""
        if any(importlib.util.find_spec(module) is None for module in cls.needs):
            return cls.when_missing
        return None

    @classmethod
    def check_address(cls, address: str) -> None:
        """Raise a UserInputError naming `--ray-address` when `address` cannot be used; asked
        before anything is written. An executor that takes no address takes none."""
        raise UserInputError(f"--ray-address is not for --executor {cls.name}")

    @abstractmethod
    def run(self, sweep: Sweep) -> bool:
        """Run every cell the folder still owes; True when any was owed.

        A cell that cannot run, or whose process dies, becomes records and the sweep goes on;
        a stop request ends it with KeyboardInterrupt and nothing recorded for the work in
        flight; a folder that cannot be written ends it with RunFolderWriteError."""


def progress_columns() -> tuple[ProgressColumn, ...]:
    """The columns of every executor's progress display."""
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


def cell_stub(
    manifest: dict[str, Any], cell: dict[str, Any], status: str, error: dict[str, str]
) -> dict[str, Any]:
    """A cell record written by an executor for a cell whose process wrote none."""
    return {
        **record_header(manifest["run_id"], cell),
        "kind": "cell",
        "status": status,
        "error": error,
        "time": utc_now(),
    }


def process_crash(exitcode: int, phase: str, where: str = "") -> dict[str, str]:
    """The error of a cell whose process ended with `exitcode` (not 0) in `phase`."""
    how = f"signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"
    message = f"cell process ended with {how}{where}"
    return {"type": "ProcessCrashed", "message": message, "phase": phase}


@dataclass
class CellProgress:
    """One cell's line of the progress display, and the phase its events last showed: the
    phase a crash is charged to (no event yet means loading)."""

    progress: Progress
    task: Any  # rich's TaskID of this cell's line
    overall: Any  # rich's TaskID of the "all images" line
    say: Callable[[str], None]
    cell: dict[str, Any]
    owed: int
    phase: str = "load"
    done: int = 0

    def show(self, event: dict[str, Any]) -> None:
        """Follow one event of the worker (bench.runner.worker); other kinds are the
        executor's own."""
        cell_id = self.cell["cell_id"]
        kind = event["kind"]
        if kind == "loaded":
            self.phase = "warmup"
            self.progress.update(self.task, description=f"{cell_id}: warming up")
            self.say(f"{cell_id}: loaded in {event['load_s']:.2f} s")
        elif kind == "warm":
            self.phase = "generate"
            self.progress.update(self.task, description=f"{cell_id}: generating")
        elif kind == "image":
            self.done += 1
            self.progress.advance(self.task)
            self.progress.advance(self.overall)
            wall = f"{event['wall_s']:.2f} s" if event.get("wall_s") else event["status"]
            what = "video" if self.cell.get("num_frames") else "image"
            self.say(f"{cell_id}: {what} {self.done}/{self.owed} {wall}")
        elif kind == "cell_failed":
            error = event["error"]
            self.progress.update(self.task, description=f"{cell_id}: {error['type']}")
            self.say(f"{cell_id}: failed in {error['phase']}: {error['type']}")

    def finish(self) -> None:
        """The cell's line complete, and the images it did not show counted in the total."""
        self.progress.update(self.task, completed=self.owed)
        self.progress.advance(self.overall, self.owed - self.done)
