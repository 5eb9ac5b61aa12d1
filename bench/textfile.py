"""Read a user's text file whole, but only after checking it is small enough and UTF-8.

Configs, prompt files and manifests are read whole, so their size is checked first (a
multi-gigabyte file named by mistake is one line, not an exhausted machine), and bytes that are
not UTF-8 are reported with their offset and line instead of a UnicodeDecodeError traceback.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import UserInputError


def read_text_bounded(
    path: Path, limit: int, what: str, error: type[UserInputError] = UserInputError
) -> str:
    """The text of `path` (UTF-8); `error` naming the file when it is too big or not UTF-8.

    `what` names the kind of file in the message ("config file", "prompt file", ...).
    """
    try:
        size = path.stat().st_size
        if size > limit:
            raise error(
                f"{path}: {size} bytes, more than a {what} may have ({limit}; docs/limits.md)"
            )
        with path.open("rb") as handle:
            data = handle.read(limit + 1)  # the file may have grown since stat
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise error(
            f"{path}: more than {limit} bytes, more than a {what} may have (docs/limits.md)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start})"
        ) from None


def decode_utf8_line(data: bytes, where: str, error: type[UserInputError]) -> str:
    """One line of a JSON Lines file as text; `error` naming `where` and the byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start} of the "
            "line)"
        ) from None
