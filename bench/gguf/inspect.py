"""Summarise a GGUF file (metadata, tensor types, sizes, bits per weight) or say clearly why not.

``gguf.GGUFReader`` trusts the counts and lengths a file states and fails on damaged files with
assorted low-level errors (mmap, numpy, struct), or loops until memory runs out. So the header is
first walked by the bounded reader of bench/gguf/header.py, which checks every count, length and
offset (tensor data inside the file included) and raises one ``GGUFFileError`` line naming the
file and the field; only then does ``GGUFReader`` read the metadata values. Which naming the
tensors use is asked of the families' ``TensorNames`` the caller passes (bench/families/gguf.py's
``inspect_gguf`` passes every registered family's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.gguf.errors import GGUFFileError
from bench.gguf.header import read_header
from bench.gguf.names import TensorNames, key_scheme

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
    key_names: str  # a family's original scheme ("bfl"), "diffusers" or "unknown"
    tensor_types: dict[str, str] = field(default_factory=dict)  # tensor name -> ggml type

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (paths as strings)."""
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def summarize_gguf(path: Path, namings: Iterable[TensorNames] = ()) -> InspectResult:
    """Read ``path``'s header and tensor table; raise ``GGUFFileError`` if it is not valid GGUF.
    ``key_names`` is the naming the first of ``namings`` recognises ("unknown" if none does)."""
    path = Path(path)
    header = read_header(path)

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
    for t in header.tensors:  # sizes in Python integers: a dimension product cannot overflow
        counts[t.ggml_type] += 1
        per_type[t.ggml_type] += t.n_bytes
        tensor_types[t.name] = t.ggml_type
        params += t.n_elements
    return InspectResult(
        path=path,
        file_bytes=header.file_bytes,
        version=header.version,
        metadata=metadata,
        tensor_count=len(header.tensors),
        tensors_per_type=dict(counts),
        bytes_per_type=dict(per_type),
        parameters=params,
        bits_per_weight=8 * sum(per_type.values()) / params if params else 0.0,
        key_names=key_scheme(tensor_types, namings),
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
