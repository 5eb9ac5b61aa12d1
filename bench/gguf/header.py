"""A bounded reader of GGUF headers: every count and length checked before it is trusted.

``gguf.GGUFReader`` believes the counts and lengths a file states: an array that claims 2**40
items in a file of 260 bytes makes it loop (appending empty views past the end of the file)
until the machine runs out of memory, and a dimension product that overflows 64 bits makes a
tensor look small. This module walks the header first, with ``struct`` over a memory map, and
holds every value to what the remaining bytes can hold and to the documented limits below, so a
few-hundred-byte file claiming gigabytes of metadata is one ``GGUFFileError`` line naming the
file and the field. Only a header that passes is handed to ``GGUFReader`` (bench/gguf/inspect.py),
whose work is then bounded too. Layout: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGMLQuantizationType,
    GGUFValueType,
)

from bench.gguf.errors import GGUFFileError

# Documented limits (docs/limits.md). FLUX.1-dev's GGUF files have ~780 tensors and ~10
# metadata keys; an LLM text encoder's tokenizer arrays hold up to ~800k items in all.
# GGUFReader builds one numpy view per array item: 1M string items took it 19 s and 1.4 GiB
# (measured once on this project's 2-core machine, load average 3.7), the cost these bound.
SUPPORTED_VERSIONS = (2, 3)  # what gguf.GGUFReader reads
MAX_TENSORS = 1 << 17
MAX_KV = 1 << 16
MAX_KEY_BYTES = 65535  # the GGUF specification's limit on key length
MAX_STRING_BYTES = 1 << 24  # one string value or tensor name
MAX_ARRAY_ITEMS = 1 << 20  # items of all arrays of the header together (nested included)
MAX_ARRAY_DEPTH = 4  # arrays of arrays
MAX_DIMS = 8  # the specification says at most 4 today (ggml's GGML_MAX_DIMS); room to grow
MAX_ALIGNMENT = 1 << 20

_HEADER_BYTES = 24  # magic, version, tensor count, metadata count
_SCALAR_BYTES = {
    GGUFValueType.UINT8: 1,
    GGUFValueType.INT8: 1,
    GGUFValueType.BOOL: 1,
    GGUFValueType.UINT16: 2,
    GGUFValueType.INT16: 2,
    GGUFValueType.UINT32: 4,
    GGUFValueType.INT32: 4,
    GGUFValueType.FLOAT32: 4,
    GGUFValueType.UINT64: 8,
    GGUFValueType.INT64: 8,
    GGUFValueType.FLOAT64: 8,
}
# The fewest bytes one item of each kind occupies: counts are checked against these at once.
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, a one-byte value
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset
_MIN_ITEM_BYTES = {**_SCALAR_BYTES, GGUFValueType.STRING: 8, GGUFValueType.ARRAY: 12}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: str
    shape: tuple[int, ...]  # GGUF order: the first dimension is the contiguous one
    n_elements: int
    n_bytes: int
    offset: int  # absolute file offset of the tensor's data


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    file_bytes: int
    version: int
    big_endian: bool
    keys: tuple[str, ...]
    alignment: int
    data_offset: int
    tensors: tuple[TensorInfo, ...]


class _Cursor:
    """Reads forward through a memory-mapped file; every read is checked against its end."""

    def __init__(self, path: Path, data: mmap.mmap, size: int, order: str) -> None:
        self.path, self.data, self.size, self.order = path, data, size, order
        self.pos = 0

    def fail(self, message: str) -> GGUFFileError:
        return GGUFFileError(f"{self.path}: {message}")

    def need(self, n: int, what: str) -> None:
        left = self.size - self.pos
        if n > left:
            raise self.fail(
                f"truncated: {what} needs {n} bytes at offset {self.pos}, the file has {left} left"
            )

    def unpack(self, fmt: str, what: str) -> int:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(self.order + fmt, self.data, self.pos)
        self.pos += n
        return int(value)

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def string(self, what: str, limit: int) -> str:
        n = self.unpack("Q", f"the length of {what}")
        if n > limit:
            raise self.fail(f"{what}: length {n} at offset {self.pos - 8} exceeds {limit} bytes")
        self.need(n, what)
        raw = self.data[self.pos : self.pos + n]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} at offset {self.pos} is not UTF-8") from None
        self.pos += n
        return text


def read_header(path: Path) -> GGUFHeader:
    """Validate and describe ``path``'s GGUF header; ``GGUFFileError`` (one line) if it is bad."""
    path = Path(path)
    if path.is_dir():
        raise GGUFFileError(f"{path}: a folder, not a GGUF file")
    if not path.is_file():
        raise GGUFFileError(f"{path}: no such file")
    size = path.stat().st_size
    if size < _HEADER_BYTES:
        raise GGUFFileError(f"{path}: file is {size} bytes, too short for a GGUF header")
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != b"GGUF":
            raise GGUFFileError(f"{path}: not a GGUF file (magic {data[:4]!r}, expected b'GGUF')")
        (version,) = struct.unpack_from("<I", data, 4)
        big_endian = version & 0xFFFF == 0  # as GGUFReader decides: a byte-swapped version
        order = ">" if big_endian else "<"
        cur = _Cursor(path, data, size, order)
        cur.pos = 4
        version = cur.unpack("I", "version")
        if version not in SUPPORTED_VERSIONS:
            raise cur.fail(f"GGUF version {version}, expected one of {SUPPORTED_VERSIONS}")
        tensor_count = cur.unpack("Q", "tensor_count")
        kv_count = cur.unpack("Q", "kv_count")
        _check_counts(cur, tensor_count, kv_count)
        keys, alignment = _read_metadata(cur, kv_count)
        infos = [_read_tensor_info(cur, i) for i in range(tensor_count)]
        data_offset = -(-cur.pos // alignment) * alignment
        tensors = _place_tensors(cur, infos, data_offset, alignment)
    return GGUFHeader(
        path=path,
        file_bytes=size,
        version=version,
        big_endian=big_endian,
        keys=tuple(keys),
        alignment=alignment,
        data_offset=data_offset,
        tensors=tuple(tensors),
    )


def _check_counts(cur: _Cursor, tensor_count: int, kv_count: int) -> None:
    left = cur.size - cur.pos
    for field, count, limit, least in (
        ("kv_count", kv_count, MAX_KV, _MIN_KV_BYTES),
        ("tensor_count", tensor_count, MAX_TENSORS, _MIN_TENSOR_BYTES),
    ):
        if count > limit:
            raise cur.fail(f"{field}: header claims {count} entries, more than the limit {limit}")
        if count * least > left:
            raise cur.fail(
                f"{field}: header claims {count} entries, but the {left} bytes after the header "
                f"hold at most {left // least} (each takes at least {least} bytes)"
            )
    if kv_count * _MIN_KV_BYTES + tensor_count * _MIN_TENSOR_BYTES > left:
        raise cur.fail(
            f"tensor_count/kv_count: {tensor_count} tensors and {kv_count} metadata entries "
            f"cannot fit in the {left} bytes after the header"
        )


def _value_type(cur: _Cursor, raw: int, what: str) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise cur.fail(f"{what}: unknown value type {raw} at offset {cur.pos - 4}") from None


def _read_metadata(cur: _Cursor, kv_count: int) -> tuple[list[str], int]:
    keys: list[str] = []
    seen: set[str] = set()
    alignment = GGUF_DEFAULT_ALIGNMENT
    budget = [MAX_ARRAY_ITEMS]
    for index in range(kv_count):
        at = cur.pos
        key = cur.string(f"metadata key {index}", MAX_KEY_BYTES)
        if not key.isprintable():
            raise cur.fail(f"metadata key {index} at offset {at}: not printable ({key[:40]!r})")
        if key in seen:
            raise cur.fail(f"metadata key {key!r} appears twice")
        seen.add(key)
        keys.append(key)
        vtype = _value_type(cur, cur.unpack("I", f"the type of {key!r}"), repr(key))
        if key == "general.alignment":
            if vtype != GGUFValueType.UINT32:
                raise cur.fail(f"general.alignment: expected a uint32, found {vtype.name}")
            alignment = cur.unpack("I", key)
            if alignment == 0 or alignment & (alignment - 1) or alignment > MAX_ALIGNMENT:
                raise cur.fail(
                    f"general.alignment: {alignment} is not a power of two up to {MAX_ALIGNMENT}"
                )
            continue
        _skip_value(cur, vtype, repr(key), depth=0, budget=budget)
    return keys, alignment


def _skip_value(
    cur: _Cursor, vtype: GGUFValueType, key: str, depth: int, budget: list[int]
) -> None:
    """Walk past one value, checking every length; `budget` counts array items left.

    `key` is the metadata key as messages show it (quoted).
    """
    if vtype in _SCALAR_BYTES:
        cur.skip(_SCALAR_BYTES[vtype], key)
        return
    if vtype == GGUFValueType.STRING:
        cur.string(key, MAX_STRING_BYTES)
        return
    # An array: item type, item count, items.
    if depth >= MAX_ARRAY_DEPTH:
        raise cur.fail(f"{key}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
    itype = _value_type(cur, cur.unpack("I", f"the item type of {key}"), key)
    count = cur.unpack("Q", f"the length of {key}")
    if count > budget[0]:
        raise cur.fail(
            f"{key}: array of {count} items; the header's arrays may hold {MAX_ARRAY_ITEMS} "
            "items in all"
        )
    least = _MIN_ITEM_BYTES[itype]
    left = cur.size - cur.pos
    if count * least > left:
        raise cur.fail(
            f"{key}: array claims {count} items of {itype.name} (at least {count * least} bytes), "
            f"the file has {left} left"
        )
    budget[0] -= count
    if itype in _SCALAR_BYTES:
        cur.skip(count * _SCALAR_BYTES[itype], key)
        return
    for _ in range(count):
        _skip_value(cur, itype, key, depth + 1, budget)


@dataclass(frozen=True)
class _RawTensor:
    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]
    relative_offset: int
    at: int  # where its info starts, for messages


def _read_tensor_info(cur: _Cursor, index: int) -> _RawTensor:
    at = cur.pos
    name = cur.string(f"tensor {index}'s name", MAX_STRING_BYTES)
    if not name.isprintable():
        raise cur.fail(f"tensor {index}'s name at offset {at}: not printable ({name[:40]!r})")
    n_dims = cur.unpack("I", f"tensor {name!r}: n_dims")
    if n_dims > MAX_DIMS:
        raise cur.fail(f"tensor {name!r}: n_dims {n_dims}, more than the limit {MAX_DIMS}")
    shape = tuple(cur.unpack("Q", f"tensor {name!r}: dims") for _ in range(n_dims))
    raw_type = cur.unpack("I", f"tensor {name!r}: type")
    try:
        ggml_type = GGMLQuantizationType(raw_type)
    except ValueError:
        raise cur.fail(f"tensor {name!r}: unknown ggml type {raw_type}") from None
    offset = cur.unpack("Q", f"tensor {name!r}: offset")
    return _RawTensor(name, ggml_type, shape, offset, at)


def _place_tensors(
    cur: _Cursor, infos: list[_RawTensor], data_offset: int, alignment: int
) -> list[TensorInfo]:
    """Each tensor's bytes, computed in Python integers, must lie inside the data section."""
    names: set[str] = set()
    out = []
    for t in infos:
        if t.name in names:
            raise cur.fail(f"tensor {t.name!r} appears twice")
        names.add(t.name)
        block, type_bytes = GGML_QUANT_SIZES[t.ggml_type]
        if t.shape and t.shape[0] % block:
            raise cur.fail(
                f"tensor {t.name!r}: first dimension {t.shape[0]} is not a multiple of "
                f"{t.ggml_type.name}'s block of {block}"
            )
        n_elements = 1
        for dim in t.shape:
            n_elements *= dim
        n_bytes = n_elements * type_bytes // block
        if t.relative_offset % alignment:
            raise cur.fail(
                f"tensor {t.name!r}: data offset {t.relative_offset} is not a multiple of the "
                f"alignment {alignment}"
            )
        start = data_offset + t.relative_offset
        end = start + n_bytes
        if end > cur.size:
            raise cur.fail(
                f"truncated: tensor {t.name!r} needs bytes up to {end}, file has {cur.size}"
            )
        out.append(TensorInfo(t.name, t.ggml_type.name, t.shape, n_elements, n_bytes, start))
    return out
