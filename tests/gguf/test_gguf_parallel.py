"""Parallel conversion: the bytes of the gguf writer, for any number of workers."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from math import prod
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter
from safetensors.torch import load_file, save_file

from bench.families.gguf import quantize_checkpoint
from bench.gguf import chunks as chunks_mod
from bench.gguf import pool as pool_mod
from bench.gguf import quants
from bench.gguf.errors import ConversionError
from bench.gguf.plan import OutputTensor, Part, load, take, tensor_runs
from bench.gguf.qtypes import file_quant_type
from bench.gguf.source import Checkpoint, bf16_bits
from tests.fresh_python import run_python
from tests.gguf.flux_names import build_plan

TYPES = ["Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q4_K_M", "Q5_K_S"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _writer_reference(src: Path, out: Path, qtype: str, key_names: str) -> None:
    """The file as ``GGUFWriter`` writes it tensor by tensor from whole tensors (no chunks, no
    offsets of our own): what the converter did before it went parallel."""
    ft = file_quant_type(qtype)
    with Checkpoint(src) as ckpt:
        plan = build_plan(ckpt, ft, key_names)  # type: ignore[arg-type]
        w = GGUFWriter(out, arch="flux")
        w.add_quantization_version(2)
        w.add_file_type(ft.file_type)
        w.add_string(
            "bench.source_dtype", Counter(t.source_dtype for t in plan).most_common(1)[0][0]
        )
        for t in plan:
            byte_shape = (*t.shape[:-1], t.nbytes // prod(t.shape[:-1]))
            w.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), t.nbytes, raw_dtype=t.qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for t in plan:
            x = load(ckpt, t).reshape(-1, t.shape[-1] if t.shape else 1)
            w.write_tensor_data(quants.quantize(x, t.qtype).reshape(-1))
        w.close()


@pytest.fixture(scope="module")
def bf16_bfl_source(tiny_flux_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny FLUX transformer in bf16 (the dtype of real checkpoints), one file."""
    sd = load_file(tiny_flux_pipeline / "transformer" / "diffusion_pytorch_model.safetensors")
    path = tmp_path_factory.mktemp("bf16") / "tiny-bf16.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, str(path))
    return path


#: Weights per chunk in these tests: tensors split inside fused parts (qkv, linear1) and across
#: workers, each worker converting many chunks (the tiny FLUX has ~3.8 M weights).
SMALL_CHUNK = 256 * 37

# Every (type, source) file on 2 workers, in one interpreter without torch, so the workers are
# forked as for `bench quantize` (~20 ms a pool; a test process has torch loaded and would spawn
# two fresh interpreters per file: test_spawned_workers_give_the_same_bytes does, once).
TWO_WORKERS = """
import json, sys
from pathlib import Path
from bench.families.gguf import quantize_checkpoint
from bench.gguf import chunks, pool

chunks.CHUNK_WEIGHTS = int(sys.argv[1])
jobs = set()
for src, out, qtype, names in json.loads(sys.argv[2]):
    jobs.add(quantize_checkpoint(Path(src), Path(out), qtype, names, jobs=2).jobs)
print(json.dumps({"start": pool._start_method(), "torch": "torch" in sys.modules,
                  "jobs": sorted(jobs)}))
"""


def _sources(tiny_flux_pipeline: Path, bf16_bfl_source: Path) -> list[tuple[Path, str]]:
    """The fp32 diffusers folder with diffusers names, the bf16 file with BFL names."""
    return [(tiny_flux_pipeline / "transformer", "auto"), (bf16_bfl_source, "bfl")]


@pytest.fixture(scope="module")
def two_worker_files(
    tiny_flux_pipeline: Path, bf16_bfl_source: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """`two-<names>-<type>.gguf` for every type and source, each converted on 2 workers."""
    folder = tmp_path_factory.mktemp("two-workers")
    files = [
        [str(src), str(folder / f"two-{names}-{qtype}.gguf"), qtype, names]
        for qtype in TYPES
        for src, names in _sources(tiny_flux_pipeline, bf16_bfl_source)
    ]
    ran, _ = run_python(
        TWO_WORKERS,
        str(SMALL_CHUNK),
        json.dumps(files),
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert ran == {"start": "fork", "torch": False, "jobs": [2]}
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("qtype", TYPES)
def test_parallel_bytes_equal_single_process_and_gguf_writer(
    qtype: str,
    tiny_flux_pipeline: Path,
    bf16_bfl_source: Path,
    two_worker_files: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks small enough that tensors split inside fused parts (qkv, linear1) and across
    workers; the fp32 diffusers folder with diffusers names, the bf16 file with BFL names."""
    monkeypatch.setattr(chunks_mod, "CHUNK_WEIGHTS", SMALL_CHUNK)
    for src, names in _sources(tiny_flux_pipeline, bf16_bfl_source):
        ref = tmp_path / f"ref-{names}.gguf"
        _writer_reference(src, ref, qtype, names)
        one = quantize_checkpoint(src, tmp_path / f"one-{names}.gguf", qtype, names, jobs=1)
        assert one.jobs == 1
        assert _digest(one.out) == _digest(ref), (qtype, names)
        two = two_worker_files / f"two-{names}-{qtype}.gguf"
        assert _digest(two) == _digest(ref), (qtype, names)


@pytest.mark.slow
def test_spawned_workers_give_the_same_bytes(
    bf16_bfl_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With torch loaded (as here) the workers are spawned, fresh interpreters that import the
    quantizer themselves: the same bytes as one process."""
    assert "torch" in sys.modules and pool_mod._start_method() == "spawn"
    monkeypatch.setattr(chunks_mod, "CHUNK_WEIGHTS", SMALL_CHUNK)
    one = quantize_checkpoint(bf16_bfl_source, tmp_path / "one.gguf", "Q4_K_M", "bfl", jobs=1)
    two = quantize_checkpoint(bf16_bfl_source, tmp_path / "two.gguf", "Q4_K_M", "bfl", jobs=2)
    assert (one.jobs, two.jobs) == (1, 2) and _digest(one.out) == _digest(two.out)


def test_thread_pool_gives_the_same_bytes(
    bf16_bfl_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chunks_mod, "CHUNK_WEIGHTS", SMALL_CHUNK)
    a = quantize_checkpoint(bf16_bfl_source, tmp_path / "a.gguf", "Q4_K_M", "bfl", jobs=1)
    b = quantize_checkpoint(
        bf16_bfl_source, tmp_path / "b.gguf", "Q4_K_M", "bfl", jobs=3, pool="thread"
    )
    assert b.jobs == min(3, pool_mod.default_threads()) and _digest(a.out) == _digest(b.out)


def test_cli_jobs_forks_workers_and_matches(bf16_bfl_source: Path, tmp_path: Path) -> None:
    """The command (no torch imported: workers are forked) with --jobs 2 writes the library's
    single-process bytes; a bad --jobs is one line, exit 2, nothing written."""
    ref = quantize_checkpoint(bf16_bfl_source, tmp_path / "ref.gguf", "Q8_0", jobs=1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    bench = [sys.executable, "-m", "bench"]
    code = (
        "import sys, runpy; import bench.gguf.pool as p; "
        "sys.argv = ['bench', *sys.argv[1:]]; "
        "print('start', p._start_method(), 'torch' in sys.modules); "
        "runpy.run_module('bench', run_name='__main__')"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "quantize",
            str(bf16_bfl_source),
            "-t",
            "Q8_0",
            "-o",
            str(tmp_path / "cli"),
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "start fork False" in r.stdout and "on 2 processes" in r.stdout
    out = tmp_path / "cli" / "tiny-bf16-Q8_0.gguf"
    assert _digest(out) == _digest(ref.out)
    bad = subprocess.run(
        [
            *bench,
            "quantize",
            str(bf16_bfl_source),
            "-t",
            "Q8_0",
            "-o",
            str(tmp_path / "bad"),
            "--jobs",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: --jobs: expected a positive number of worker processes, got 0"
    ]
    assert not (tmp_path / "bad").exists()


def test_resolve_jobs(bf16_bfl_source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Checkpoint(bf16_bfl_source) as ckpt:
        plan = build_plan(ckpt, file_quant_type("Q8_0"), "auto")
        chunks = chunks_mod.plan_chunks(ckpt, plan, 0, 32)
    assert pool_mod.resolve_jobs(None, chunks) == 1  # a few M weights: not worth workers
    monkeypatch.setattr(pool_mod, "AUTO_PARALLEL_MIN_WEIGHTS", 0)
    monkeypatch.setattr(pool_mod, "default_threads", lambda: 5)
    assert pool_mod.resolve_jobs(None, chunks) == 5
    assert pool_mod.resolve_jobs(4, chunks[:3]) == 3  # never more workers than chunks
    assert pool_mod.resolve_jobs(100_000, chunks) == 5  # nor than the CPUs it may use
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConversionError, match="jobs: expected a positive"):
            pool_mod.resolve_jobs(bad, chunks)  # type: ignore[arg-type]


def test_chunks_tile_each_tensor_exactly(
    bf16_bfl_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk byte ranges are disjoint, in order, and cover every tensor with the writer's
    padding between tensors."""
    monkeypatch.setattr(chunks_mod, "CHUNK_WEIGHTS", 1000)
    with Checkpoint(bf16_bfl_source) as ckpt:
        plan = build_plan(ckpt, file_quant_type("Q4_K_M"), "bfl")
        chunks = chunks_mod.plan_chunks(ckpt, plan, 4096, 32)
    by_name: dict[str, list[chunks_mod.Chunk]] = {}
    for c in chunks:
        by_name.setdefault(c.name, []).append(c)
    offset = 4096
    for t in plan:
        cs = by_name[t.name]
        assert cs[0].offset == offset
        for a, b in itertools.pairwise(cs):
            assert a.offset + a.nbytes == b.offset
        assert sum(c.nbytes for c in cs) == t.nbytes
        assert sum(c.rows for c in cs) == t.shape[0]
        offset += -(-t.nbytes // 32) * 32
    assert max(len(v) for v in by_name.values()) > 3  # some tensors really are split


def test_odd_row_swap_and_row_ranges_follow_torch(tmp_path: Path) -> None:
    """``swap_halves`` is ``torch.cat(x.chunk(2)[::-1])`` also for an odd row count, across two
    parts with row ranges, and any row range of it reads the same rows."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g), torch.randn(6, 3, generator=g)
    path = tmp_path / "w.safetensors"
    save_file({"a": a, "b": b}, str(path))
    x = torch.cat([a[1:], b[:4]])  # 7 rows
    want = torch.cat(x.chunk(2)[::-1]).numpy()
    t = OutputTensor("w", (7, 3), "F32", (Part("a", 1, None), Part("b", None, 4)), True, T.F32)
    with Checkpoint(path) as ckpt:
        assert np.array_equal(load(ckpt, t), want)
        runs = tensor_runs(ckpt, t)
        for lo in range(7):
            for hi in range(lo + 1, 8):
                got = np.concatenate(
                    [ckpt.load(r.src.key)[r.start : r.stop] for r in take(runs, lo, hi)]
                )
                assert np.array_equal(got, want[lo:hi])


def test_bf16_rounding_matches_torch() -> None:
    """Every finite value, infinities, subnormals and overflow to infinity round as torch's."""
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.standard_normal(10000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 10000),
            np.array(
                [
                    0.0,
                    -0.0,
                    np.inf,
                    -np.inf,
                    np.nan,
                    3.4e38,
                    -3.4e38,
                    1e-45,
                    1.00390625,
                    1.01171875,
                ],
                np.float32,
            ),
        ]
    ).astype(np.float32)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    got = bf16_bits(x)
    nan = np.isnan(x)
    assert np.array_equal(got[~nan], want[~nan])
    assert got[nan].tolist() == [0x7FC0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_workers_die_with_a_killed_parent() -> None:
    """A parent killed outright cannot shut its pool down; its workers must not linger."""
    code = (
        "import os, sys, time\n"
        "from bench.gguf.pool import _die_with_parent\n"
        "parent = os.getpid()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    _die_with_parent(parent)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "print(pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    stat = Path(f"/proc/{child}/stat")
    for _ in range(100):  # gone, or a zombie waiting for init to reap it
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        pytest.fail("the worker outlived its killed parent")


def test_cli_jobs_beyond_the_cpus_is_clamped_with_one_note(
    bf16_bfl_source: Path, tmp_path: Path
) -> None:
    """`--jobs 100000` started one process per chunk (140 for FLUX on a 2-CPU machine): it now
    runs on the CPUs this process may use, says so in one line, and writes the same bytes."""
    ref = quantize_checkpoint(bf16_bfl_source, tmp_path / "ref.gguf", "Q8_0", jobs=1)
    with Checkpoint(bf16_bfl_source) as ckpt:
        plan = build_plan(ckpt, file_quant_type("Q8_0"), "auto")
        n_chunks = len(chunks_mod.plan_chunks(ckpt, plan, 0, 32))
    cpus = len(os.sched_getaffinity(0))
    if n_chunks <= cpus:
        pytest.skip(f"{n_chunks} chunks, {cpus} CPUs: the chunks bound the workers here")
    r = subprocess.run(
        [str(Path(sys.executable).parent / "bench"), "quantize", str(bf16_bfl_source),
         "-t", "Q8_0", "-o", str(tmp_path / "out"), "--jobs", "100000"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        f"note: --jobs 100000: this process may use {cpus} CPUs; converting on at most "
        f"{cpus} worker processes"
    ]
    assert f"on {cpus} process" in r.stdout  # not one per chunk
    assert _digest(tmp_path / "out" / "tiny-bf16-Q8_0.gguf") == _digest(ref.out)
