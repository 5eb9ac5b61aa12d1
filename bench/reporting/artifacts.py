"""What a report section produces: a picture written to the report folder, or the reason there is
none. Both Markdown and HTML render the same list, so a missing plot is explained in both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Picture:
    """A PNG in the report folder (`filename`), or `reason` in words when it could not be drawn."""

    key: str
    title: str
    filename: str | None = None
    caption: str = ""
    reason: str | None = None

    def path(self, out_dir: Path) -> Path | None:
        return None if self.filename is None else out_dir / self.filename
