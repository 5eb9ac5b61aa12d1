"""Which executor runs a sweep's cells: the registry of executors, and the choice `--executor`
(and `--ray-address`) make among them.

Parsed and checked before anything is prepared or written (a bad choice is one line of bad
input, like a bad config), and kept small and picklable so the library API, the CLI and the
command printed for `--resume` all speak of the same thing. A new executor is a subclass of
bench.runner.executor_base.Executor added to EXECUTORS.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import UserInputError
from bench.runner.executor_base import Executor, ExecutorUnavailable
from bench.runner.local_executor import LocalExecutor
from bench.runner.ray_executor import RayExecutor

#: Every executor, by the name `--executor` gives it (`local` when none is given).
EXECUTORS: dict[str, type[Executor]] = {e.name: e for e in (LocalExecutor, RayExecutor)}


@dataclass(frozen=True)
class ExecutorChoice:
    """`kind` local or ray; `ray_address` an existing cluster (None: a Ray instance started here
    for the sweep, or the one this process is already connected to)."""

    kind: str = "local"
    ray_address: str | None = None

    @classmethod
    def parse(cls, kind: str | None, ray_address: str | None = None) -> ExecutorChoice:
        kind = (kind or "local").strip().lower()
        if kind not in EXECUTORS:
            raise UserInputError(f"--executor {kind!r}: expected one of {', '.join(EXECUTORS)}")
        chosen = EXECUTORS[kind]
        if ray_address and not chosen.takes_address:
            takers = " or ".join(name for name, e in EXECUTORS.items() if e.takes_address)
            raise UserInputError(f"--ray-address is for --executor {takers}")
        missing = chosen.unavailable()
        if missing is not None:
            raise ExecutorUnavailable(f"--executor {kind}: {missing}")
        ray_address = (ray_address or "").strip() or None
        if ray_address:
            chosen.check_address(ray_address)
        return cls(kind=kind, ray_address=ray_address)

    def executor(self) -> Executor:
        """The executor this choice names, ready to run a sweep."""
        return EXECUTORS[self.kind](self.ray_address)

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def words(self) -> list[str]:
        """The command-line options that choose this executor (none for the local one)."""
        if self.is_local:
            return []
        words = ["--executor", self.kind]
        if self.ray_address:
            words += ["--ray-address", self.ray_address]
        return words


LOCAL = ExecutorChoice()
