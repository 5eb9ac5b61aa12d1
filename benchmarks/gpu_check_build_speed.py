"""Throughput of the synthetic pipeline builder, to size the GPU check's build phase.

Builds a mid-size FLUX pipeline (FLUX.1-dev's widths, CLIP-L and its VAE, but one double and
two single transformer blocks and two T5 layers: about 1.4 B parameters) with the real builder
code, once per thread count, and prints the fill rate (random weights made, in parameters and in
GB of bf16 per second, also per core) and the save rate (safetensors written). From these it
extrapolates the full FLUX.1-dev build (16.9 B parameters, 33.8 GB) to a machine with N cores:
the fill scales with cores only as far as the builder runs tensors concurrently, the save not.

    .venv/bin/python benchmarks/gpu_check_build_speed.py --threads 1 2 --target-cores 16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _mid_spec():  # type: ignore[no-untyped-def]
    from bench.families.flux import FLUX_DEV

    return dataclasses.replace(
        FLUX_DEV,
        transformer={**FLUX_DEV.transformer, "num_layers": 1, "num_single_layers": 2},
        t5={**FLUX_DEV.t5, "num_layers": 2},
    )


def _count(spec) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Parameters and bytes of a spec, on the meta device (tied T5 embedding counted once)."""
    from bench.families import get_family

    params = nbytes = 0
    for module in get_family("flux").meta_components(spec).values():
        for tensor in module.parameters():  # parameters() yields a tied tensor once
            params += tensor.numel()
            nbytes += tensor.numel() * 2  # bf16
    return params, nbytes


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(threads: int, workdir: Path) -> dict[str, float]:
    import torch
    from diffusers import FluxPipeline

    from bench.models import synthetic

    torch.set_num_threads(threads)
    spec = _mid_spec()
    synthetic.PRESETS["flux-dev-mid"] = spec
    params, nbytes = _count(spec)
    out = workdir / f"mid-{threads}"
    cpu0, started = _cpu_s(), time.perf_counter()
    components = synthetic._build_components(spec, 0)  # the builder's own fill
    cpu1, filled = _cpu_s(), time.perf_counter()
    FluxPipeline(**components).save_pretrained(out, safe_serialization=True, max_shard_size="10GB")
    cpu2, saved = _cpu_s(), time.perf_counter()
    written = sum(p.stat().st_size for p in out.rglob("*.safetensors"))
    shutil.rmtree(out)
    fill_s, save_s = filled - started, saved - filled
    return {
        "threads": threads,
        "params": params,
        "bf16_bytes": nbytes,
        "fill_s": fill_s,
        "fill_cpu_s": cpu1 - cpu0,
        "save_s": save_s,
        "save_cpu_s": cpu2 - cpu1,
        "fill_mparams_per_s": params / fill_s / 1e6,
        "fill_gb_per_s": nbytes / fill_s / 1e9,
        "fill_gb_per_s_per_core": nbytes / fill_s / 1e9 / threads,
        # per CPU-second: what one busy core makes, less sensitive to other load on the machine
        "fill_gb_per_cpu_s": nbytes / (cpu1 - cpu0) / 1e9,
        "save_gb_per_s": written / save_s / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--target-cores", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    from bench.families.flux import FLUX_DEV
    from bench.library_output import quiet_library_output

    quiet_library_output()
    full_params, full_bytes = _count(FLUX_DEV)
    rows = []
    with tempfile.TemporaryDirectory(prefix="build-speed-") as tmp:
        for threads in args.threads:
            row = measure(threads, Path(tmp))
            rows.append(row)
            print(
                f"threads={threads}: {row['params'] / 1e9:.2f} B params, "
                f"fill {row['fill_s']:.1f} s "
                f"({row['fill_mparams_per_s']:.0f} Mparams/s, {row['fill_gb_per_s']:.3f} GB/s, "
                f"{row['fill_gb_per_s_per_core']:.3f} GB/s per thread; "
                f"{row['fill_gb_per_cpu_s']:.3f} GB per CPU-second), save {row['save_s']:.1f} s "
                f"({row['save_gb_per_s']:.2f} GB/s)"
            )
    one = next((r for r in rows if r["threads"] == 1), rows[0])
    per_core = one["fill_gb_per_cpu_s"]
    fill_target = full_bytes / (per_core * 1e9 * args.target_cores)
    save_target = full_bytes / (one["save_gb_per_s"] * 1e9)
    print(
        f"FLUX.1-dev: {full_params / 1e9:.2f} B params, {full_bytes / 1e9:.1f} GB bf16; "
        f"at {per_core:.3f} GB per CPU-second: "
        f"fill {full_bytes / (per_core * 1e9):.0f} s on one core, "
        f"{fill_target:.0f} s on {args.target_cores} cores if it scaled perfectly; "
        f"save {save_target:.0f} s at {one['save_gb_per_s']:.2f} GB/s"
    )
    print(f"load average: {Path('/proc/loadavg').read_text().strip()}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "flux_dev_params": full_params}, indent=2))


if __name__ == "__main__":
    main()
