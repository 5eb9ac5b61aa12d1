"""Which executor runs a sweep's cells: local processes one at a time, or Ray tasks in parallel.

Parsed and checked before anything is prepared or written (a bad choice is one line of bad
input, like a bad config), and kept small and picklable so the library API, the CLI and the
command printed for `--resume` all speak of the same thing.
"""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import dataclass

from bench.errors import UserInputError

EXECUTORS = ("local", "ray")


CONNECT_TIMEOUT_S = 5.0


class RayUnavailable(UserInputError):
    """`--executor ray` on an installation without Ray."""


class RayConnectError(UserInputError):
    """Ray could not be started here or the cluster at `--ray-address` not reached."""


def unreachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why `host:port` (or `ray://host:port`) cannot be reached, else None; other forms
    (`auto`, `local`) are Ray's to resolve. Asked before anything is written: an address
    nobody answers on would otherwise keep Ray retrying for minutes and then end the process."""
    target = address.removeprefix("ray://")
    if "://" in target:
        return None
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


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
        if kind == "ray" and ray_address:
            reason = unreachable(ray_address)
            if reason is not None:
                raise RayConnectError(f"--ray-address {ray_address}: cannot connect ({reason})")
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
