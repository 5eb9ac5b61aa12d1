"""The addresses `--ray-address` takes, checked before anything is prepared or written.

Ray itself would retry an address nobody answers on for minutes and then end the process, or
fail after the run folder exists, quoting advice about RAY_ADDRESS; here a bad address is one
line of bad input, like a bad config. Nothing here imports Ray but `auto`'s look-up.
"""

from __future__ import annotations

import re
import socket

from bench.errors import UserInputError

CONNECT_TIMEOUT_S = 5.0


class RayConnectError(UserInputError):
    """Ray could not be started here or the cluster at `--ray-address` not reached."""


#: The forms `--ray-address` takes, as Ray's own `ray.init(address=...)` reads them.
ADDRESS_FORMS = (
    "host:port (a cluster's GCS, 6379 by default), ray://host:port (Ray Client, 10001 by "
    "default), auto (the cluster `ray start` began on this machine) or local (a new instance)"
)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
HTTP_PROBE_TIMEOUT_S = 2.0


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` (IPv6 hosts in brackets), or None when it is not one."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def address_problem(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why `--ray-address address` cannot be used, else None; asked before anything is
    written. An address of a form Ray does not connect to (``http://...``, a host without a
    port) is refused as such; ``host:port`` and ``ray://host:port`` must accept a connection
    and not answer as a web server (the dashboard's 8265 is the usual mix-up); ``auto`` must
    find a cluster. Ray itself would retry an address nobody answers on for minutes and then
    end the process, or fail after the run folder exists, quoting advice about RAY_ADDRESS."""
    if address == "local":
        return None
    if address == "auto":
        return _auto_problem()
    scheme = _SCHEME.match(address)
    if scheme is not None and scheme["scheme"] != "ray":
        url = f"a {scheme['scheme']}:// URL"
        return f"{url} is not an address Ray connects to; expected {ADDRESS_FORMS}"
    target = _host_port(address.removeprefix("ray://"))
    if target is None:
        return f"expected {ADDRESS_FORMS}"
    reason = unreachable(address, timeout)
    if reason is not None:
        return f"cannot connect ({reason})"
    if _answers_http(*target):
        return (
            "answers HTTP (a web server such as the Ray dashboard), not Ray; give the cluster's "
            "GCS address host:port (6379 by default) or ray://host:port (10001)"
        )
    return None


def unreachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why `host:port` (or `ray://host:port`) accepts no connection now, else None (also for
    forms that are not a host and port: address_problem refuses those)."""
    target = _host_port(address.removeprefix("ray://"))
    if target is None:
        return None
    try:
        socket.create_connection(target, timeout).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


def _answers_http(host: str, port: int) -> bool:
    """Whether the server at host:port answers an HTTP/1.1 request as HTTP/1 does: Ray's GCS
    and its client server speak gRPC (HTTP/2) and answer with a binary SETTINGS frame, or not
    at all, never with ``HTTP/``."""
    try:
        with socket.create_connection((host, port), HTTP_PROBE_TIMEOUT_S) as conn:
            conn.settimeout(HTTP_PROBE_TIMEOUT_S)
            conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            return conn.recv(5) == b"HTTP/"
    except OSError:
        return False


def _auto_problem() -> str | None:
    """`auto` as ray.init reads it (RAY_ADDRESS, else the cluster `ray start` recorded on this
    machine): what it finds must be reachable; finding nothing is said in our words."""
    try:  # Ray's own lookup (private: absent from some release, ray.init decides alone)
        from ray._private.services import get_ray_address_from_environment  # Ray: heavy
    except ImportError:
        return None
    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:  # none found (of several, Ray takes the latest)
        found = None
    if not found or found == "auto":
        return (
            "no Ray cluster found on this machine (start one with `ray start --head`, give its "
            "host:port, or leave --ray-address out to start Ray here for the sweep)"
        )
    problem = address_problem(found)
    return f"{found}: {problem}" if problem else None
