"""Where cell processes come from: a warm forkserver (bench.runner.preload), else `spawn`.

The server is started as soon as a sweep knows it will run cells, so its imports overlap the
parent's own preparation (base pipeline, GGUF files, manifest). It lives as long as the parent
and serves later sweeps of the same process; a sweep that finds the environment changed since
the server started (libraries read variables such as HF_HUB_OFFLINE when they are imported)
starts a new one, so a cell always sees the environment of the sweep that started it.

A server whose imports initialised CUDA (bench.runner.preload says which and how) cannot fork
cells that use the GPU; `usable_context` asks it once and then gives `spawn` instead.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing import forkserver, resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

PRELOAD = ["bench.runner.preload"]
STOP_GRACE_S = 10.0  # how long a stopped cell's process may take to end before it is killed
_server_environment: dict[str, str] | None = None
_stop_registered = False
# The running server's answer to usable_context (None: it holds no CUDA), asked once per server.
_server_cuda: tuple[int, str | None] | None = None
# Variables that change while one process runs many sweeps and that no cell reads: pytest names
# the running test in PYTEST_CURRENT_TEST, so a server would otherwise be restarted every test.
_IGNORED_ENVIRONMENT = frozenset({"PYTEST_CURRENT_TEST"})


def cell_context() -> BaseContext:
    """The context to start cells with; the forkserver is started (or restarted) now."""
    global _server_environment
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    environment = {k: v for k, v in os.environ.items() if k not in _IGNORED_ENVIRONMENT}
    if _server_environment is not None and environment != _server_environment:
        stop_cell_server()
    context.set_forkserver_preload(PRELOAD)
    # The tracker unblocks SIGINT when it starts, which would drop a Ctrl-C held back below.
    resource_tracker.ensure_running()
    with born_ignoring_sigint():
        forkserver.ensure_running()
    global _stop_registered
    if not _stop_registered:
        atexit.register(stop_cell_server)  # runs before multiprocessing's own exit handler
        _stop_registered = True
    _server_environment = environment
    return context


def usable_context(context: BaseContext) -> tuple[BaseContext, str | None]:
    """The context cells can use CUDA from, and a line to show when it is not `context`.

    A cell forked from a server that initialised CUDA while warming up cannot use the GPU
    ("Cannot re-initialize CUDA in forked subprocess", or the driver's initialization error):
    the server says whether it did (bench.runner.preload.CUDA_IN_SERVER, read in a child it
    forks) and such a server's cells are started `spawn`ed instead, each importing the
    libraries itself. Asked once per server; call it after the parent's own preparation, so the
    server's imports overlap it.
    """
    global _server_cuda
    if context.get_start_method() != "forkserver":
        return context, None
    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if _server_cuda is None or _server_cuda[0] != pid:
        _server_cuda = (pid, call_in_fresh_process(context, server_cuda_state))
    reason = _server_cuda[1]
    if reason is None:
        return context, None
    note = (
        f"the cell server initialised CUDA while importing ({reason}): a cell forked from it "
        "could not use the GPU, so cells start spawned (each imports the libraries itself: "
        "slower to start, the same measurements)"
    )
    return mp.get_context("spawn"), note


def server_cuda_state() -> str | None:
    """In a child forked from the warm server: what the server said of its CUDA state."""
    import bench.runner.preload  # torch, diffusers: in the server already (its warm-up imports)

    return bench.runner.preload.CUDA_IN_SERVER


def call_in_fresh_process(context: BaseContext, function: Callable[[], Any]) -> Any:
    """`function()` in a new process started from `context` (forked warm), its result returned.

    For work that needs the heavy libraries but must not leave them, or CUDA, in the caller: the
    sweep's own process collects its environment this way and never imports torch itself.
    """
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_reply, args=(send, function), name="probe")
    with born_ignoring_sigint():
        process.start()
    send.close()
    try:
        ok, result = receive.recv()
    except BaseException:
        process.terminate()
        raise
    finally:
        receive.close()
        process.join()
    if not ok:
        raise result
    return result


def _reply(send: Any, function: Callable[[], Any]) -> None:
    try:
        send.send((True, function()))
    except Exception as exc:
        send.send((False, exc))


def stop_cell_server() -> None:
    """Stop the warm server now.

    Left alone it ends only after this process has, tearing down its interpreter with torch and
    diffusers loaded: over a second in which it still holds this process's stdout and stderr,
    so whoever reads them (a CI log, a pipe) waits that long for their end. It holds nothing
    worth a clean exit (each cell is a process of its own), so it is terminated.
    """
    global _server_environment, _server_cuda
    server = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        with suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    stop = getattr(server, "_stop", None)
    if stop is not None:
        stop()  # closes its pipe and reaps it
    _server_environment = None
    _server_cuda = None


@contextmanager
def born_ignoring_sigint() -> Iterator[None]:
    """Processes started inside are born with SIGINT ignored, with no moment in which a Ctrl-C
    could raise KeyboardInterrupt in them (an ignored disposition survives exec, and Python
    installs its handler only where SIGINT is not ignored). A Ctrl-C meant for this process
    meanwhile is held back, not lost: blocked in this (main) thread, it stays pending until the
    handler is back. That holds while no other thread runs, as when a sweep starts its server;
    another thread could take the signal in this window of a few milliseconds and drop it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def relay_events(
    receive: Connection,
    process: BaseProcess,
    handle: Callable[[dict[str, Any]], None],
    running: Callable[[], bool] = lambda: True,
) -> None:
    """Hand each event a cell process sends to `handle` until it closes its end or exits (then
    what it sent before exiting is drained), or until `running()` turns false."""
    while running():
        ready = wait([receive, process.sentinel], timeout=0.25)
        if receive in ready:
            try:
                handle(receive.recv())
            except EOFError:
                return
            continue
        if process.sentinel in ready:
            while receive.poll():
                try:
                    handle(receive.recv())
                except EOFError:
                    break
            return


def stop_process(process: BaseProcess, grace_s: float = STOP_GRACE_S) -> None:
    """End a cell's process now: asked to terminate, killed when it has not ended after
    `grace_s`, then reaped. A process never started is left alone."""
    if process.pid is None:
        return
    if process.is_alive():
        process.terminate()
        process.join(grace_s)
    if process.is_alive():
        process.kill()
    process.join()
