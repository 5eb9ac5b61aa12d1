"""Summarise a GGUF file (metadata, tensor types, sizes, bits per weight) or say clearly why not.

``gguf.GGUFReader`` fails on damaged files with assorted low-level errors (mmap, numpy, struct);
this module turns those into one ``GGUFFileError`` line naming the file and the problem, and also
checks that every tensor's data lies inside the file, which the reader does not do eagerly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.gguf.errors import GGUFFileError
from bench.gguf.names import key_scheme

GGUF_MAGIC = b"GGUF"
_MAX_LISTED_ITEMS = 8  # long array metadata values are summarised, not dumped


@dataclass
class InspectResult:
    """What ``inspect_gguf`` found."""

    path: Path
    file_bytes: int
    version: int
    metadata: dict[str, Any]
    tensor_count: int
    tensors_per_type: dict[str, int]
    bytes_per_type: dict[str, int]
    parameters: int
    bits_per_weight: float  # 8 * tensor data bytes / parameters
    key_names: str  # "bfl", "diffusers" or "unknown"
    tensor_types: dict[str, str] = field(default_factory=dict)  # tensor name -> ggml type

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (paths as strings)."""
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def inspect_gguf(path: Path) -> InspectResult:
    """Read ``path``'s header and tensor table; raise ``GGUFFileError`` if it is not valid GGUF."""
    path = Path(path)
    if not path.is_file():
        raise GGUFFileError(f"{path}: no such file")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        raise GGUFFileError(f"{path}: file is {size} bytes, too short for a GGUF header")
    if head[:4] != GGUF_MAGIC:
        raise GGUFFileError(f"{path}: not a GGUF file (magic {head[:4]!r}, expected b'GGUF')")

    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GGUFFileError(f"{path}: truncated or corrupt GGUF header ({reason})") from exc

    metadata: dict[str, Any] = {}
    for name, fld in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        metadata[name] = _field_value(fld)

    counts: Counter[str] = Counter()
    per_type: Counter[str] = Counter()
    tensor_types: dict[str, str] = {}
    params = 0
    for t in reader.tensors:
        end = t.data_offset + t.n_bytes
        if end > size:
            raise GGUFFileError(
                f"{path}: truncated: tensor {t.name!r} needs bytes up to {end}, file has {size}"
            )
        tname = t.tensor_type.name
        counts[tname] += 1
        per_type[tname] += int(t.n_bytes)
        tensor_types[t.name] = tname
        params += int(t.n_elements)
    version_field = reader.fields.get("GGUF.version")
    version = int(version_field.parts[-1][0]) if version_field is not None else 0
    return InspectResult(
        path=path,
        file_bytes=size,
        version=version,
        metadata=metadata,
        tensor_count=len(reader.tensors),
        tensors_per_type=dict(counts),
        bytes_per_type=dict(per_type),
        parameters=params,
        bits_per_weight=8 * sum(per_type.values()) / params if params else 0.0,
        key_names=key_scheme(tensor_types),
        tensor_types=tensor_types,
    )


def _field_value(fld: Any) -> Any:
    """A field's value as plain Python; long arrays become a short summary string."""
    try:
        value = fld.contents()
    except Exception:
        return "<unreadable>"
    if isinstance(value, list) and len(value) > _MAX_LISTED_ITEMS:
        return f"<array of {len(value)}: {value[:_MAX_LISTED_ITEMS]!r}...>"
    if hasattr(value, "item"):
        value = value.item()
    return value
