"""The warm cell server outlives a test: pytest's own variable does not restart it."""

from __future__ import annotations

import os
import sys
from multiprocessing import forkserver

import pytest

from bench.runner.processes import cell_context


def _server_pid() -> int:
    cell_context()
    return forkserver._forkserver._forkserver_pid


@pytest.mark.skipif(sys.platform != "linux", reason="the forkserver: the spawn fallback elsewhere")
def test_a_changed_environment_restarts_the_server_but_the_test_name_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = _server_pid()
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "another.py::test (call)")
    assert _server_pid() == first
    # a variable libraries read when they are imported: the server is started again
    offline = "0" if os.environ.get("HF_HUB_OFFLINE") == "1" else "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    assert _server_pid() != first
