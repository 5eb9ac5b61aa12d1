"""Fault injection on GGUF headers: counts and lengths a file cannot hold are one line, exit 2.

A few hundred bytes claiming gigabytes of metadata must be refused before anything trusts the
claim (gguf.GGUFReader alone loops until memory runs out on such a file). The CLI cases run the
real `bench inspect` under a memory limit and a timeout, one after another in one fresh process.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from bench.families.gguf import inspect_gguf
from bench.gguf import header as limits
from bench.gguf.errors import GGUFFileError
from bench.gguf.header import read_header
from tests.cli_probe import run_commands

U8, U32, STRING, ARRAY = 0, 4, 8, 9
MEMORY_LIMIT = 2 << 30  # far above what a bounded reader needs, far below what a loop reaches
RUN_MEMORY_LIMIT = 4 << 30  # `bench run` imports torch and diffusers, then refuses the file


def s(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def gguf(tensors: int = 0, kvs: bytes = b"", kv_count: int = 1, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kv_count) + kvs


def tensor_info(name: bytes, dims: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    out = s(name) + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims)
    return out + struct.pack("<IQ", ggml_type, offset)


PAD = b"\0" * 200
HOSTILE: dict[str, tuple[bytes, str]] = {
    # name: (file bytes, text the error must contain)
    "array-length": (
        gguf(kvs=s(b"general.junk") + struct.pack("<IIQ", ARRAY, U8, 2**40) + PAD),
        "general.junk",
    ),
    "string-array-length": (
        gguf(kvs=s(b"tokenizer.tokens") + struct.pack("<IIQ", ARRAY, STRING, 2**20) + PAD),
        "tokenizer.tokens",
    ),
    "kv-count": (gguf(kv_count=2**62) + PAD, "kv_count"),
    "tensor-count": (gguf(tensors=2**40, kv_count=0) + PAD, "tensor_count"),
    "key-length": (gguf(kvs=struct.pack("<Q", 2**60) + PAD), "metadata key 0"),
    "string-value-length": (
        gguf(kvs=s(b"general.name") + struct.pack("<IQ", STRING, 2**50) + PAD),
        "general.name",
    ),
    "nested-arrays": (
        gguf(
            kvs=s(b"general.deep")
            + struct.pack("<IIQ", ARRAY, ARRAY, 1)
            + (struct.pack("<IQ", ARRAY, 1) * 8)
            + PAD
        ),
        "general.deep",
    ),
    "n-dims": (
        gguf(tensors=1, kv_count=0) + s(b"w") + struct.pack("<I", 2**31) + PAD,
        "n_dims",
    ),
    "dims-overflow": (
        # 2**32 x 2**32 F32 elements: the product overflows 64 bits (numpy's np.prod says 0).
        gguf(tensors=1, kv_count=0) + tensor_info(b"w", (2**32, 2**32)) + PAD,
        "'w'",
    ),
    "offset-outside": (
        gguf(tensors=1, kv_count=0) + tensor_info(b"w", (4,), offset=2**40) + PAD,
        "'w'",
    ),
    "alignment": (
        gguf(kvs=s(b"general.alignment") + struct.pack("<II", U32, 3) + PAD),
        "general.alignment",
    ),
}


def _limit_memory(limit: int = MEMORY_LIMIT) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """`bench inspect` on every HOSTILE file, one after another in one fresh interpreter under
    the memory limit and a timeout (tests/cli_probe.py): {case: (file, its result)}."""
    root = tmp_path_factory.mktemp("hostile")
    paths = {}
    for case, (content, _) in HOSTILE.items():
        assert len(content) < 1024
        paths[case] = root / f"{case}.gguf"
        paths[case].write_bytes(content)
    results, _ = run_commands(
        [["inspect", str(path)] for path in paths.values()],
        timeout=120,
        preexec_fn=_limit_memory,
        env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
    )
    return {case: (paths[case], r) for case, r in zip(HOSTILE, results, strict=True)}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_header_is_one_line_exit_2(
    inspected: dict[str, tuple[Path, dict]], case: str
) -> None:
    path, result = inspected[case]
    field = HOSTILE[case][1]
    assert result["code"] == 2, result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"]
    lines = error_lines(result["stderr"])
    assert len(lines) == 1, result["stderr"]
    assert str(path) in lines[0] and field in lines[0], lines[0]


def _small_gguf(path: Path) -> Path:
    """A valid file with every kind of header field: scalars, strings, arrays, two tensors."""
    writer = GGUFWriter(str(path), "flux")
    writer.add_string("general.name", "bounds test")
    writer.add_uint32("test.count", 7)
    writer.add_array("test.words", ["alpha", "beta", "gamma"])
    writer.add_array("test.numbers", [1, 2, 3, 4])
    writer.add_tensor("a.weight", np.arange(64, dtype=np.float32).reshape(2, 32))
    writer.add_tensor("b.weight", np.ones(32, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_valid_file_agrees_with_gguf_reader(tmp_path: Path) -> None:
    from gguf import GGUFReader

    path = _small_gguf(tmp_path / "ok.gguf")
    header = read_header(path)
    reader = GGUFReader(path)
    assert [t.name for t in header.tensors] == [t.name for t in reader.tensors]
    assert [t.offset for t in header.tensors] == [int(t.data_offset) for t in reader.tensors]
    assert [t.n_bytes for t in header.tensors] == [int(t.n_bytes) for t in reader.tensors]
    assert header.data_offset == reader.data_offset
    assert set(header.keys) == {k for k in reader.fields if not k.startswith("GGUF.")}
    assert inspect_gguf(path).metadata["test.words"] == ["alpha", "beta", "gamma"]


def _mutations(data: bytes, end: int) -> Callable[[], list[tuple[str, bytes]]]:
    def make() -> list[tuple[str, bytes]]:
        out = []
        for at in range(4, end):
            for fill in (b"\xff" * 8, struct.pack("<Q", 2**31), b"\x00" * 8):
                out.append((f"{fill.hex()}@{at}", data[:at] + fill + data[at + len(fill) :]))
        out += [(f"cut@{n}", data[:n]) for n in range(0, end + 8)]
        return out

    return make


def test_every_header_mutation_is_refused_or_read(tmp_path: Path) -> None:
    """Overwrite each header position with huge, medium and zero values, and cut the file at
    each position: inspect either reads it or raises GGUFFileError naming the file."""
    data = _small_gguf(tmp_path / "ok.gguf").read_bytes()
    end = read_header(tmp_path / "ok.gguf").data_offset
    refused = 0
    cases = _mutations(data, end)()
    for name, content in cases:
        path = tmp_path / "m.gguf"
        path.write_bytes(content)
        try:
            inspect_gguf(path)
        except GGUFFileError as exc:
            refused += 1
            assert str(exc).startswith(str(path)) and "\n" not in str(exc), (name, exc)
    assert refused > len(cases) // 2  # the mutations do break files


def test_limits_are_what_the_module_documents() -> None:
    # A header at the limits parses in bounded work: each limit is finite and positive.
    for name in ("MAX_TENSORS", "MAX_KV", "MAX_STRING_BYTES", "MAX_ARRAY_ITEMS", "MAX_DIMS"):
        assert 0 < getattr(limits, name) < 2**32, name


def test_hostile_gguf_in_a_config_is_one_line(tmp_path: Path, tiny_pipeline: Path) -> None:
    """The config's GGUF file goes through the same reader before any run folder exists."""
    import yaml

    from tests.runner.sample_config import BASE_CONFIG

    hostile = tmp_path / "claims-a-terabyte.gguf"
    hostile.write_bytes(HOSTILE["array-length"][0])
    full, q8 = BASE_CONFIG["variants"]
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({**BASE_CONFIG, "variants": [full, {**q8, "file": str(hostile)}]})
    )
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(config), "--out", str(out), "--no-score"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: _limit_memory(RUN_MEMORY_LIMIT),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "variants.Q8_0.file" in lines[0] and "general.junk" in lines[0]
    assert not out.exists()
