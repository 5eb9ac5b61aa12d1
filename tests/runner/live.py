"""Drive a real `bench run` process: start it in its own process group, read its output as it
comes, wait for records, send real signals. Used by the fault-injection tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil

from bench.results import MANIFEST, RECORDS

BENCH = str(Path(sys.executable).with_name("bench"))


class LiveRun:
    """`bench run ...` as a user starts it from a shell: its own process group, like a job."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, **popen: Any) -> None:
        self.command = [BENCH, "run", *args]
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=env,
            **popen,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 240) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"bench ended before {what}:\n{self.stderr}")
            time.sleep(0.02)
        raise AssertionError(f"no {what} within {timeout} s:\n{self.stderr}")

    def wait_for_line(self, fragment: str, timeout: float = 240) -> str:
        return self.wait_for(
            f"a line with {fragment!r}",
            lambda: next((line for line in self.lines if fragment in line), None),
            timeout,
        )

    def signal_group(self, signum: int) -> None:
        """What a terminal does on Ctrl-C: the signal reaches every process of the job."""
        os.killpg(self.process.pid, signum)

    def finish(self, timeout: float = 240) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout=10)
        return code

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run_folder(results: Path) -> Path | None:
    folders = [p.parent for p in results.glob(f"*/{MANIFEST}")]
    return folders[0] if len(folders) == 1 else None


def records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / RECORDS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        with suppress(json.JSONDecodeError):  # a line being written right now
            out.append(json.loads(line))
    return out


def image_count(results: Path) -> int:
    run_dir = run_folder(results)
    return 0 if run_dir is None else sum(r["kind"] == "image" for r in records(run_dir))


def assert_complete(run_dir: Path) -> None:
    """Exactly one ok record per cell and per image, every image on disk, nothing temporary."""
    manifest = json.loads((run_dir / MANIFEST).read_text())
    found = records(run_dir)
    assert (run_dir / RECORDS).read_bytes().endswith(b"\n")
    cells = Counter(r["cell_id"] for r in found if r["kind"] == "cell")
    images = Counter(
        (r["cell_id"], r["prompt_id"], r["repeat"]) for r in found if r["kind"] == "image"
    )
    assert cells == Counter({c["cell_id"]: 1 for c in manifest["cells"]})
    expected = {
        (c["cell_id"], i["prompt_id"], i["repeat"])
        for c in manifest["cells"]
        for i in manifest["images"]
    }
    assert set(images) == expected and set(images.values()) == {1}
    assert [r for r in found if r["status"] != "ok"] == []
    for record in found:
        if record["kind"] == "image":
            assert (run_dir / record["image"]).stat().st_size > 0
    assert manifest["finished_at"] is not None
    assert list(run_dir.rglob("*.tmp")) == []
