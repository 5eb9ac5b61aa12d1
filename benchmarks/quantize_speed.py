"""Quantizer throughput vs ggml, and peak memory of a large streaming conversion.

Part 1 quantizes the same float32 tensor with bench.gguf (numpy) and with ggml's C reference
(``ggml_quantize_chunk`` through ggml-python, which runs on the calling thread) and prints
million weights per second and the ratio ours/ggml per type, after checking the bytes are equal.

Part 2 writes a synthetic FLUX.1-width (3072) bf16 checkpoint of a few GB in diffusers layout
(sharded, with an index), converts it in a child process and reports the child's peak RSS next
to the checkpoint size and the largest single tensor.

    .venv/bin/python benchmarks/quantize_speed.py                    # both parts
    .venv/bin/python benchmarks/quantize_speed.py --skip-convert     # speed only
    .venv/bin/python benchmarks/quantize_speed.py --double 2 --single 4 --convert-types Q8_0 Q4_K
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TYPES = ["Q8_0", "Q6_K", "Q5_K", "Q4_K"]


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


def _peak_rss_kib() -> int:
    """This process's own RSS high-water mark (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries that over from the parent across fork+exec, so a
    spawned child would report the parent's peak (here: writing the synthetic checkpoint).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _convert_child(src: str, out: str, qtype: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    from bench.gguf.convert import quantize_checkpoint

    s = quantize_checkpoint(Path(src), Path(out), qtype)
    peak_kib = _peak_rss_kib()
    queue.put(
        {
            "seconds": s.seconds,
            "params": s.parameters,
            "file_bytes": s.file_bytes,
            "counts": s.tensor_counts,
            "peak_rss": peak_kib * 1024,
            "names": s.key_names,
        }
    )


def convert_memory(n_double: int, n_single: int, types: list[str]) -> list[dict[str, object]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-gguf-") as tmp:
        src = Path(tmp) / "transformer"
        t0 = time.perf_counter()
        total, largest = write_synthetic_flux(src, n_double, n_single)
        print(
            f"\nsynthetic FLUX.1-width checkpoint: {n_double} double + {n_single} single blocks, "
            f"{total / 2**30:.2f} GiB bf16, largest tensor {largest / 2**20:.0f} MiB "
            f"(written in {time.perf_counter() - t0:.0f} s)"
        )
        ctx = mp.get_context("spawn")
        for t in types:
            q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            out = Path(tmp) / f"out-{t}.gguf"
            p = ctx.Process(target=_convert_child, args=(str(src), str(out), t, q))
            p.start()
            r = q.get()
            p.join()
            out.unlink(missing_ok=True)
            r.update({"type": t, "checkpoint_bytes": total, "largest_tensor_bytes": largest})
            results.append(r)
            print(
                f"{t:6s} {r['seconds']:7.1f} s  {r['params'] / r['seconds'] / 1e6:6.1f} Mw/s  "
                f"peak RSS {r['peak_rss'] / 2**30:.2f} GiB  "
                f"output {r['file_bytes'] / 2**30:.2f} GiB  "
                f"{r['names']} names  {r['counts']}"
            )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--cols", type=int, default=3072)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--types", nargs="+", default=TYPES)
    ap.add_argument("--skip-convert", action="store_true")
    ap.add_argument("--double", type=int, default=2, help="double blocks in the synthetic model")
    ap.add_argument("--single", type=int, default=3, help="single blocks in the synthetic model")
    ap.add_argument("--convert-types", nargs="+", default=["Q8_0", "Q4_K_M"])
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    import ggml  # noqa: F401 - fail early if the oracle is missing

    print(
        f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}, "
        f"numpy {np.__version__}"
    )
    res: dict[str, object] = {"speed": speed(args.rows, args.cols, args.repeat, args.types)}
    if not args.skip_convert:
        res["convert"] = convert_memory(args.double, args.single, args.convert_types)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
