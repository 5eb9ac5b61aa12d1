"""Quantizer throughput vs ggml, and whole conversions end to end against a ggml+gguf baseline.

Part 1 quantizes the same float32 tensor with bench.gguf (numpy, one thread) and with ggml's C
reference (``ggml_quantize_chunk`` through ggml-python, on the calling thread) and prints
million weights per second and the ratio ours/ggml per type, after checking the bytes are equal.

Part 2 (end to end) writes a synthetic FLUX.1-width (3072) bf16 checkpoint in diffusers layout
(sharded, with an index) and converts it per type with two whole processes, timed from start to
exit, alternating which goes first, best of ``--rounds`` each:
  ours:     ``python -m bench quantize SRC --type T --out DIR --jobs N``
  baseline: this script's ``--baseline`` mode, built like llama-quantize: per tensor, N
            threads each read their rows of the same safetensors, widen them to float32 and
            quantize them with ggml's C code (ctypes releases the GIL during the call); then
            ``gguf.GGUFWriter`` writes the tensor (names, types and metadata from
            bench.gguf.plan).
Both files must be byte-identical. Peak memory is the whole process tree's RSS (the command and
its workers), sampled every 20 ms. Goal printed per type: baseline time / ours >= 1.0.

Part 3 (``--pools``) converts with the library in a fresh process per run: worker processes vs
worker threads at N jobs, and one process (jobs=1), alternating, best of ``--rounds``.

    .venv/bin/python benchmarks/quantize_speed.py                    # parts 1 and 2
    .venv/bin/python benchmarks/quantize_speed.py --skip-speed --pools --double 1 --single 1
    .venv/bin/python benchmarks/quantize_speed.py --skip-convert     # part 1 only
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import filecmp
import functools
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TYPES = ["Q8_0", "Q6_K", "Q5_K", "Q4_K"]
ROOT = Path(__file__).resolve().parents[1]


def _ggml_quantize(x: np.ndarray, qtype: str) -> np.ndarray:
    import ggml

    rows, cols = x.shape
    tid = getattr(ggml, f"GGML_TYPE_{qtype}")
    row = ggml.ggml_row_size(tid, cols)
    out = np.empty(rows * row, dtype=np.uint8)
    f = ctypes.POINTER(ctypes.c_float)
    ggml.ggml_quantize_chunk(
        tid, x.ctypes.data_as(f), out.ctypes.data_as(ctypes.c_void_p), 0, rows, cols, None
    )
    return out.reshape(rows, row)


def speed(rows: int, cols: int, repeat: int, types: list[str]) -> list[dict[str, object]]:
    """Throughput of ours vs ggml on one Gaussian tensor with sparse outliers.

    ggml and ours run alternately ``repeat`` times (so load from other jobs hits both alike);
    Mw/s are from the best time of each, ``ratio`` is the median of the per-round ratios.
    """
    from bench.gguf.quants import quantize

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    x.reshape(-1)[::997] *= 8
    results = []
    print(f"tensor {rows}x{cols} float32 ({x.size / 1e6:.1f} M weights), {repeat} rounds")
    print(f"{'type':6s} {'ggml Mw/s':>10s} {'ours Mw/s':>10s} {'ratio':>6s}  bytes")
    for t in types:
        same = bool(np.array_equal(_ggml_quantize(x, t), quantize(x, t)))  # also warms up
        tg, to = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            _ggml_quantize(x, t)
            t1 = time.perf_counter()
            quantize(x, t)
            t2 = time.perf_counter()
            tg.append(t1 - t0)
            to.append(t2 - t1)
        r = {
            "type": t,
            "ggml_mw_s": x.size / min(tg) / 1e6,
            "ours_mw_s": x.size / min(to) / 1e6,
            "ratio": float(np.median(np.array(tg) / np.array(to))),
            "identical": same,
        }
        results.append(r)
        print(
            f"{t:6s} {r['ggml_mw_s']:10.1f} {r['ours_mw_s']:10.1f} {r['ratio']:6.2f}  "
            f"{'identical' if same else 'DIFFER'}"
        )
    return results


def write_synthetic_flux(folder: Path, n_double: int, n_single: int) -> tuple[int, int]:
    """A random bf16 FLUX.1-width transformer in diffusers layout; returns (bytes, largest)."""
    import torch
    from safetensors.torch import save_file

    w, mlp, ctx, pooled, chans = 3072, 12288, 4096, 768, 64
    shapes: dict[str, tuple[int, ...]] = {
        "x_embedder.weight": (w, chans),
        "x_embedder.bias": (w,),
        "context_embedder.weight": (w, ctx),
        "context_embedder.bias": (w,),
        "proj_out.weight": (chans, w),
        "proj_out.bias": (chans,),
        "norm_out.linear.weight": (2 * w, w),
        "norm_out.linear.bias": (2 * w,),
    }
    for emb, d_in in (
        ("timestep_embedder", 256),
        ("guidance_embedder", 256),
        ("text_embedder", pooled),
    ):
        shapes[f"time_text_embed.{emb}.linear_1.weight"] = (w, d_in)
        shapes[f"time_text_embed.{emb}.linear_1.bias"] = (w,)
        shapes[f"time_text_embed.{emb}.linear_2.weight"] = (w, w)
        shapes[f"time_text_embed.{emb}.linear_2.bias"] = (w,)
    for i in range(n_double):
        p = f"transformer_blocks.{i}."
        lin = {
            "norm1.linear": (6 * w, w),
            "norm1_context.linear": (6 * w, w),
            "ff.net.0.proj": (mlp, w),
            "ff.net.2": (w, mlp),
            "ff_context.net.0.proj": (mlp, w),
            "ff_context.net.2": (w, mlp),
            "attn.to_out.0": (w, w),
            "attn.to_add_out": (w, w),
        }
        for q in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"):
            lin[f"attn.{q}"] = (w, w)
        for k, s in lin.items():
            shapes[f"{p}{k}.weight"] = s
            shapes[f"{p}{k}.bias"] = (s[0],)
        for n in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
            shapes[f"{p}attn.{n}.weight"] = (128,)
    for i in range(n_single):
        p = f"single_transformer_blocks.{i}."
        lin = {
            "norm.linear": (3 * w, w),
            "attn.to_q": (w, w),
            "attn.to_k": (w, w),
            "attn.to_v": (w, w),
            "proj_mlp": (mlp, w),
            "proj_out": (w, w + mlp),
        }
        for k, s in lin.items():
            shapes[f"{p}{k}.weight"] = s
            shapes[f"{p}{k}.bias"] = (s[0],)
        for n in ("norm_q", "norm_k"):
            shapes[f"{p}attn.{n}.weight"] = (128,)

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    shard, shard_bytes, n_shard, weight_map = {}, 0, 0, {}
    total, largest = 0, 0
    limit = 1 << 30

    def flush() -> None:
        nonlocal shard, shard_bytes, n_shard
        if shard:
            name = f"diffusion_pytorch_model-{n_shard:05d}.safetensors"
            save_file(shard, str(folder / name))
            weight_map.update(dict.fromkeys(shard, name))
            shard, shard_bytes, n_shard = {}, 0, n_shard + 1

    for k, s in shapes.items():
        t = (torch.randn(s, generator=g) * 0.02).to(torch.bfloat16)
        nbytes = t.numel() * 2
        total += nbytes
        largest = max(largest, nbytes)
        if shard_bytes + nbytes > limit:
            flush()
        shard[k] = t
        shard_bytes += nbytes
    flush()
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    config = {
        "_class_name": "FluxTransformer2DModel",
        "num_attention_heads": 24,
        "attention_head_dim": 128,
        "num_layers": n_double,
        "num_single_layers": n_single,
        "in_channels": chans,
        "joint_attention_dim": ctx,
        "pooled_projection_dim": pooled,
        "guidance_embeds": True,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return total, largest


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_timed(cmd: list[str]) -> dict[str, object]:
    """Wall time of a whole process from start to exit, the CPU time of it and every process it
    waited for (its workers), and its tree's peak RSS (sampled)."""
    import resource

    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    return {"seconds": seconds, "cpu_s": cpu, "peak_rss": peak[0], "stdout": out}


def baseline_convert(src: Path, qtype: str, out: Path, jobs: int) -> None:
    """ggml's C quantizers on ``jobs`` threads + gguf's writer, as llama-quantize works: one
    tensor at a time, its rows split over the threads (each reads its rows, widens them to
    float32 and quantizes them with ggml; ctypes releases the GIL in the C call), then the main
    thread writes it with ``GGUFWriter.write_tensor_data``. Buffers are reused from tensor to
    tensor. Tensor names, types and metadata come from bench.gguf.plan, so the file must be
    byte-identical to ours."""
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor
    from math import prod

    from gguf import GGUFWriter

    from bench.gguf.plan import build_plan
    from bench.gguf.qtypes import file_quant_type
    from bench.gguf.source import Checkpoint

    ft = file_quant_type(qtype)
    with Checkpoint(src) as ckpt, ThreadPoolExecutor(jobs) as pool:
        plan = build_plan(ckpt, ft, "auto")
        w = GGUFWriter(out, arch="flux")
        w.add_quantization_version(2)
        w.add_file_type(ft.file_type)
        w.add_string(
            "bench.source_dtype", Counter(t.source_dtype for t in plan).most_common(1)[0][0]
        )
        for t in plan:
            shape = (*t.shape[:-1], t.nbytes // prod(t.shape[:-1]))
            w.add_tensor_info(t.name, shape, np.dtype(np.uint8), t.nbytes, raw_dtype=t.qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        f32 = np.empty(max(t.n_params for t in plan), dtype=np.float32)
        dst = np.empty(max(t.nbytes for t in plan), dtype=np.uint8)
        for t in plan:
            rows = t.shape[0] if t.shape else 1
            x = f32[: t.n_params].reshape(rows, -1)
            y = dst[: t.nbytes].reshape(rows, -1)
            bounds = [rows * i // jobs for i in range(jobs + 1)]
            parts = [(r0, r1) for r0, r1 in itertools.pairwise(bounds) if r1 > r0]
            fill = functools.partial(_baseline_rows, ckpt, t, x, y)
            list(pool.map(fill, parts))
            w.write_tensor_data(y.reshape(-1))
        w.close()


def _baseline_rows(ckpt, t, x, y, part) -> None:  # type: ignore[no-untyped-def]
    """One thread's rows ``part`` of tensor ``t``: read, widen into ``x``, convert into ``y``."""
    import ggml
    from gguf import GGMLQuantizationType as T
    from gguf.quants import quantize as gguf_quantize

    from bench.gguf.plan import take, tensor_runs
    from bench.gguf.source import read_rows

    r0, r1 = part
    row = r0
    for r in take(tensor_runs(ckpt, t), r0, r1):
        step = max(1, (1 << 22) // max(1, x.shape[1]))  # read 4 Mi values at a time
        for a in range(r.start, r.stop, step):
            b = min(r.stop, a + step)
            raw = read_rows(r.src, a, b)
            if r.src.dtype == "BF16":
                np.left_shift(raw, 16, out=x[row : row + b - a].view(np.uint32), dtype=np.uint32)
            else:
                x[row : row + b - a] = raw
            row += b - a
    xs = x[r0:r1]
    if t.qtype == T.F32:
        y[r0:r1] = xs.view(np.uint8)
    elif t.qtype == T.F16:
        y[r0:r1] = xs.astype(np.float16).view(np.uint8)
    elif t.qtype == T.BF16:
        y[r0:r1] = gguf_quantize(xs, T.BF16).view(np.uint8)
    else:
        tid = getattr(ggml, f"GGML_TYPE_{t.qtype.name}")
        fptr = ctypes.POINTER(ctypes.c_float)
        cols = x.shape[1]
        # ggml offsets both buffers from the start row itself
        ggml.ggml_quantize_chunk(
            tid,
            x.ctypes.data_as(fptr),
            y.ctypes.data_as(ctypes.c_void_p),
            r0 * cols,
            r1 - r0,
            cols,
            None,
        )


def library_convert(src: Path, qtype: str, out: Path, jobs: int, pool: str) -> None:
    from bench.families.gguf import quantize_checkpoint

    quantize_checkpoint(src, out, qtype, jobs=jobs, pool=pool)  # type: ignore[arg-type]


def synthetic_source(tmp: Path, n_double: int, n_single: int) -> tuple[Path, int]:
    src = tmp / "transformer"
    t0 = time.perf_counter()
    total, largest = write_synthetic_flux(src, n_double, n_single)
    print(
        f"\nsynthetic FLUX.1-width checkpoint: {n_double} double + {n_single} single blocks, "
        f"{total / 2**30:.2f} GiB bf16, largest tensor {largest / 2**20:.0f} MiB "
        f"(written in {time.perf_counter() - t0:.0f} s)"
    )
    return src, total // 2


def end_to_end(
    src: Path, weights: int, types: list[str], jobs: int, rounds: int, tmp: Path
) -> list[dict[str, object]]:
    """Whole ``bench quantize`` process against the ggml+gguf baseline process, per type."""
    print(
        f"\nend to end, {jobs} jobs, best of {rounds} rounds (alternating order); "
        f"ratio = baseline s / ours s, goal >= 1.0"
    )
    print(
        f"{'type':6s} {'ours s':>8s} {'base s':>8s} {'ratio':>6s} {'ours Mw/s':>10s} "
        f"{'ours peak':>10s} {'base peak':>10s}  bytes"
    )
    results = []
    for t in types:
        ours_dir = tmp / "ours"
        ours_file = ours_dir / f"{_stem(src)}-{t}.gguf"
        base_file = tmp / f"baseline-{t}.gguf"
        ours_cmd = [
            sys.executable,
            "-m",
            "bench",
            "quantize",
            str(src),
            "--type",
            t,
            "--out",
            str(ours_dir),
            "--jobs",
            str(jobs),
        ]
        base_cmd = [sys.executable, __file__, "--baseline", str(src), t, str(base_file), str(jobs)]
        runs: dict[str, list[dict[str, object]]] = {"ours": [], "base": []}
        identical = True
        for r in range(rounds):
            order = [("ours", ours_cmd), ("base", base_cmd)]
            for side, cmd in order if r % 2 == 0 else order[::-1]:
                runs[side].append(run_timed(cmd))
            identical &= filecmp.cmp(ours_file, base_file, shallow=False)
            ours_file.unlink()
            base_file.unlink()
        best = {k: min(v, key=lambda x: x["seconds"]) for k, v in runs.items()}
        res = {
            "type": t,
            "jobs": jobs,
            "ours_s": [x["seconds"] for x in runs["ours"]],
            "baseline_s": [x["seconds"] for x in runs["base"]],
            "ours_cpu_s": [x["cpu_s"] for x in runs["ours"]],
            "baseline_cpu_s": [x["cpu_s"] for x in runs["base"]],
            "ratio": best["base"]["seconds"] / best["ours"]["seconds"],  # type: ignore[operator]
            "ours_peak_rss": max(x["peak_rss"] for x in runs["ours"]),  # type: ignore[type-var]
            "baseline_peak_rss": max(x["peak_rss"] for x in runs["base"]),  # type: ignore[type-var]
            "identical": identical,
            "weights": weights,
        }
        results.append(res)
        print(
            f"{t:6s} {best['ours']['seconds']:8.2f} {best['base']['seconds']:8.2f} "
            f"{res['ratio']:6.2f} {weights / best['ours']['seconds'] / 1e6:10.1f} "  # type: ignore[operator]
            f"{res['ours_peak_rss'] / 2**30:8.2f} G {res['baseline_peak_rss'] / 2**30:8.2f} G  "  # type: ignore[operator]
            f"{'identical' if identical else 'DIFFER'}"
        )
    return results


def pools(
    src: Path, weights: int, types: list[str], jobs: int, rounds: int, tmp: Path
) -> list[dict[str, object]]:
    """Worker processes vs threads at ``jobs``, and one process, each a fresh interpreter."""
    kinds = [("process", jobs), ("thread", jobs), ("process", 1)]
    print(
        f"\nlibrary conversion, fresh process per run, best of {rounds} (alternating): "
        "wall s / CPU s of the process and its workers"
    )
    print(f"{'type':6s} " + " ".join(f"{f'{k} x{n}':>16s}" for k, n in kinds))
    results = []
    for t in types:
        runs: dict[str, list[dict[str, object]]] = {f"{k} x{n}": [] for k, n in kinds}
        for r in range(rounds):
            for k, n in kinds if r % 2 == 0 else kinds[::-1]:
                out = tmp / f"pool-{t}.gguf"
                cmd = [sys.executable, __file__, "--library", str(src), t, str(out), str(n), k]
                runs[f"{k} x{n}"].append(run_timed(cmd))
                out.unlink()
        best = {k: min(v, key=lambda x: x["seconds"]) for k, v in runs.items()}
        results.append(
            {
                "type": t,
                "jobs": jobs,
                "weights": weights,
                "seconds": {k: [x["seconds"] for x in v] for k, v in runs.items()},
                "cpu_s": {k: [x["cpu_s"] for x in v] for k, v in runs.items()},
            }
        )
        cells = [f"{b['seconds']:7.2f}/{b['cpu_s']:<7.2f}" for b in best.values()]
        print(f"{t:6s} " + " ".join(f"{c:>16s}" for c in cells))
    return results


def _stem(src: Path) -> str:
    from bench.gguf.batch import output_stem

    return output_stem(src)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--baseline", "--library"):
        src, qtype, out, jobs = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
        if sys.argv[1] == "--baseline":
            baseline_convert(src, qtype, out, jobs)
        else:
            library_convert(src, qtype, out, jobs, sys.argv[6])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--cols", type=int, default=3072)
    ap.add_argument("--repeat", type=int, default=3, help="part 1 rounds")
    ap.add_argument("--types", nargs="+", default=TYPES)
    ap.add_argument("--skip-speed", action="store_true", help="skip part 1")
    ap.add_argument("--skip-convert", action="store_true", help="skip part 2")
    ap.add_argument("--pools", action="store_true", help="also run part 3")
    ap.add_argument("--pool-types", nargs="+", help="part 3's types (default: --types)")
    ap.add_argument("--src", type=Path, help="convert this checkpoint instead of a synthetic one")
    ap.add_argument("--double", type=int, default=2, help="double blocks in the synthetic model")
    ap.add_argument("--single", type=int, default=3, help="single blocks in the synthetic model")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--rounds", type=int, default=2, help="parts 2 and 3: best of this many")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    import ggml  # noqa: F401 - fail early if the oracle is missing

    load = os.getloadavg()
    print(
        f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable "
        f"CPUs, python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    res: dict[str, object] = {"cpus": len(os.sched_getaffinity(0)), "load_start": load}
    if not args.skip_speed:
        res["speed"] = speed(args.rows, args.cols, args.repeat, args.types)
    if not args.skip_convert or args.pools:
        with tempfile.TemporaryDirectory(prefix="bench-gguf-") as tmp_name:
            tmp = Path(tmp_name)
            if args.src is not None:
                from bench.gguf.source import Checkpoint

                src = args.src
                with Checkpoint(src) as ckpt:
                    weights = sum(int(np.prod(t.shape)) for t in ckpt.tensors.values())
            else:
                src, weights = synthetic_source(tmp, args.double, args.single)
            if not args.skip_convert:
                res["end_to_end"] = end_to_end(
                    src, weights, args.types, args.jobs, args.rounds, tmp
                )
            if args.pools:
                res["pools"] = pools(
                    src, weights, args.pool_types or args.types, args.jobs, args.rounds, tmp
                )
            shutil.rmtree(tmp / "ours", ignore_errors=True)
    res["load_end"] = os.getloadavg()
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in res['load_end'])}")  # type: ignore[union-attr]
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
