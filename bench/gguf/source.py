"""Lazy, row-range access to a source checkpoint (diffusers folder or one safetensors file).

Nothing is read until rows are asked for, so converting a 12-billion-weight model holds only a
few row chunks in memory at a time. Shapes and dtypes come from the safetensors headers. Data
are read with numpy alone (bf16 is widened by a bit shift), so the converter and its worker
processes never import torch, which would cost each of them over a second of start-up.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

import numpy as np

from bench.gguf.errors import ConversionError

#: numpy storage of each floating safetensors dtype (bf16 and fp8 as their bit patterns).
_STORAGE: dict[str, type] = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "F8_E4M3": np.uint8,
    "F8_E5M2": np.uint8,
}
#: Bytes per value of every safetensors dtype, floating or not (for validating headers).
_ITEMSIZE = {"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1} | {
    k: np.dtype(v).itemsize for k, v in _STORAGE.items()
}


@dataclass(frozen=True)
class SourceTensor:
    """Where a tensor lives and what it looks like, without its data."""

    key: str  # key as stored in the file
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype string: "BF16", "F16", "F32", ...
    data_start: int = 0  # file offset of the data section (8 + header length)
    offsets: tuple[int, int] = (0, 0)  # [start, stop) within the data section

    @property
    def rows(self) -> int:
        """Length of dim 0 (a scalar counts as one row)."""
        return self.shape[0] if self.shape else 1

    @property
    def row_bytes(self) -> int:
        """Bytes of one dim-0 row; rows are contiguous in a safetensors file."""
        return prod(self.shape[1:]) * _ITEMSIZE.get(self.dtype, 1)

    @property
    def is_float(self) -> bool:
        return self.dtype in _STORAGE


def read_safetensors_header(path: Path) -> tuple[int, dict[str, dict[str, object]]]:
    """(data section start, header dict) of a safetensors file; raises ConversionError if bad."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ConversionError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        n = struct.unpack("<Q", head)[0]
        if n > min(size - 8, 100 << 20):
            raise ConversionError(f"{path}: not a safetensors file (header length {n} invalid)")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConversionError(f"{path}: not a safetensors file (bad JSON header)") from exc
    if not isinstance(header, dict):
        raise ConversionError(f"{path}: not a safetensors file (header is not an object)")
    return 8 + n, header


class Checkpoint:
    """Index of all tensors of a source checkpoint; opens files on demand."""

    def __init__(self, src: Path) -> None:
        self.src = Path(src)
        self.config: dict[str, object] = {}
        self.tensors: dict[str, SourceTensor] = {}
        files = self._files()
        for f in files:
            data_start, header = read_safetensors_header(f)
            size = f.stat().st_size
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                try:
                    shape = tuple(int(s) for s in info["shape"])  # type: ignore[index]
                    start, stop = (int(o) for o in info["data_offsets"])  # type: ignore[index]
                    dtype = str(info["dtype"])  # type: ignore[index]
                except (KeyError, TypeError, ValueError) as exc:
                    raise ConversionError(f"{f}: malformed header entry for {key!r}") from exc
                if data_start + stop > size or start > stop:
                    raise ConversionError(f"{f}: truncated: tensor {key!r} lies past the file end")
                st = SourceTensor(key, f, shape, dtype, data_start, (start, stop))
                if dtype in _ITEMSIZE and stop - start != st.rows * st.row_bytes:
                    raise ConversionError(
                        f"{f}: tensor {key!r} holds {stop - start} bytes, its shape {shape} "
                        f"and dtype {dtype} need {st.rows * st.row_bytes}"
                    )
                self.tensors[key] = st
        if not self.tensors:
            raise ConversionError(f"{self.src}: no tensors found")

    def _files(self) -> list[Path]:
        src = self.src
        if not src.exists():
            raise ConversionError(f"{src}: no such file or directory")
        if src.is_file():
            if src.suffix != ".safetensors":
                raise ConversionError(f"{src}: expected a .safetensors file or a diffusers folder")
            return [src]
        cfg = src / "config.json"
        if cfg.is_file():
            try:
                self.config = json.loads(cfg.read_text())
            except json.JSONDecodeError as exc:
                raise ConversionError(f"{cfg}: invalid JSON ({exc.msg})") from exc
        index = sorted(src.glob("*.safetensors.index.json"))
        if index:
            try:
                weight_map = json.loads(index[0].read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ConversionError(
                    f"{index[0]}: expected a JSON object with 'weight_map'"
                ) from exc
            files = [src / name for name in dict.fromkeys(weight_map.values())]
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise ConversionError(f"{missing[0]}: shard named in {index[0].name} is missing")
            return files
        files = sorted(src.glob("*.safetensors"))
        if not files:
            raise ConversionError(f"{src}: folder holds no *.safetensors files")
        return files

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between loads; kept so callers can use ``with``."""

    def load(self, key: str) -> np.ndarray:
        """One whole tensor as float32 (see ``read_rows``)."""
        st = self.tensors[key]
        return to_float32(read_rows(st, 0, st.rows), st.dtype).reshape(st.shape)


def read_rows(st: SourceTensor, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a floating tensor in its storage dtype, shape (rows, row values).

    Plain positional reads, not a memory map, on purpose: mapped pages a process has touched
    count in its RSS while the map lives (and the kernel may map whole runs of a freshly written
    file), which made a streaming conversion look as big as the checkpoint. ``preadv`` copies
    exactly the rows' bytes into a fresh buffer and nothing else stays resident.
    """
    storage = _STORAGE.get(st.dtype)
    if storage is None:
        raise ConversionError(f"{st.file}: tensor {st.key!r} has unsupported dtype {st.dtype}")
    n = (stop - start) * st.row_bytes
    per_row = st.row_bytes // np.dtype(storage).itemsize
    buf = np.empty((stop - start, per_row), dtype=storage)
    offset = st.data_start + st.offsets[0] + start * st.row_bytes
    view = memoryview(buf.reshape(-1)).cast("B")
    fd = os.open(st.file, os.O_RDONLY)
    try:
        got = 0
        while got < n:
            k = os.preadv(fd, [view[got:]], offset + got)
            if k == 0:
                raise ConversionError(f"{st.file}: truncated data for tensor {st.key!r}")
            got += k
    finally:
        os.close(fd)
    return buf


def to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Widen storage values to float32 exactly (bf16: the 16 bits become the high half)."""
    if dtype == "BF16":
        out = np.empty(raw.shape, dtype=np.uint32)
        np.left_shift(raw, 16, out=out, dtype=np.uint32)
        return out.view(np.float32)
    if dtype in ("F8_E4M3", "F8_E5M2"):  # numpy has no fp8; rare enough to pay for torch here
        import torch

        fp8 = torch.float8_e4m3fn if dtype == "F8_E4M3" else torch.float8_e5m2
        return torch.from_numpy(raw).view(fp8).to(torch.float32).numpy()
    return raw.astype(np.float32, copy=False)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, rounded to nearest even as ``tensor.to(torch.bfloat16)``
    does, so the converter writes the bytes it wrote with torch. NaN becomes the quiet NaN
    0x7FC0 (torch itself gives 0x7FC0 or 0xFFFF depending on its code path)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bias = ((u >> 16) & 1) + np.uint32(0x7FFF)
    out = ((u + bias) >> 16).astype(np.uint16)  # wraps only for NaNs, which are replaced
    out[np.isnan(u.view(np.float32))] = 0x7FC0
    return out
