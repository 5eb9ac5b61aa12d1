"""Which executor runs a sweep's cells: local processes one at a time, or Ray tasks in parallel.

Parsed and checked before anything is prepared or written (a bad choice is one line of bad
input, like a bad config), and kept small and picklable so the library API, the CLI and the
command printed for `--resume` all speak of the same thing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from bench.errors import UserInputError

EXECUTORS = ("local", "ray")


class RayUnavailable(UserInputError):
    """`--executor ray` on an installation without Ray."""


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
        if ray_address and kind != "ray":
            raise UserInputError("--ray-address is for --executor ray")
        if kind == "ray" and importlib.util.find_spec("ray") is None:
            raise RayUnavailable(
                "--executor ray: Ray is not installed here; install the extra: "
                "pip install -e '.[ray]'"
            )
        return cls(kind=kind, ray_address=ray_address or None)

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
