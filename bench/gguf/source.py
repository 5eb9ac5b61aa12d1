"""Lazy, tensor-by-tensor access to a source checkpoint (diffusers folder or one safetensors file).

Nothing is read until a tensor is asked for, so converting a 12-billion-weight model holds only a
few tensors in memory at a time. Shapes and dtypes come from the safetensors headers.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.gguf.errors import ConversionError


@dataclass(frozen=True)
class SourceTensor:
    """Where a tensor lives and what it looks like, without its data."""

    key: str  # key as stored in the file
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype string: "BF16", "F16", "F32", ...
    data_start: int = 0  # file offset of the data section (8 + header length)
    offsets: tuple[int, int] = (0, 0)  # [start, stop) within the data section


_TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


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
                self.tensors[key] = SourceTensor(key, f, shape, dtype, data_start, (start, stop))
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

    def load(self, key: str) -> torch.Tensor:
        """Read one tensor (in its stored dtype) with plain file reads.

        Not through a memory map on purpose: mapped pages a process has touched count in its RSS
        while the map lives (and the kernel may map whole runs of a freshly written file), which
        made a streaming conversion look as big as the checkpoint. ``readinto`` copies exactly
        the tensor's bytes into a fresh buffer and nothing else stays resident.
        """
        st = self.tensors[key]
        dtype = _TORCH_DTYPES.get(st.dtype)
        if dtype is None:
            raise ConversionError(f"{st.file}: tensor {key!r} has unsupported dtype {st.dtype}")
        start, stop = st.offsets
        buf = torch.empty(stop - start, dtype=torch.uint8)
        with st.file.open("rb") as fh:
            fh.seek(st.data_start + start)
            n = fh.readinto(memoryview(buf.numpy()))
        if n != stop - start:
            raise ConversionError(f"{st.file}: truncated data for tensor {key!r}")
        return buf.view(dtype).reshape(st.shape)
