"""What the Ray executor costs and gives on this machine: one small sweep, local and on Ray.

The same config (N full-precision cells of the tiny synthetic FLUX, 64 px, 2 steps, 2 images
each, one torch thread per cell so a cell does the same work under both executors) runs once
with the local executor (one cell at a time) and once on a local Ray instance with 2 CPU
slots (two cells at a time). Printed: wall time of both sweeps, Ray's start-up, and per cell
the parts of a task's life that the local executor does not have, from the `ray` timing each
cell record keeps (bench.runner.ray_executor):

    queued_s         submit -> the task runs (first cells: scheduling and a Ray worker's start;
                     later ones: mostly waiting for a free slot, not overhead)
    setup_s          the task's own set-up before the cell starts
    process_start_s  first cell of a Ray worker: its warm server's start (imports); later: a fork
    collect_s        reading the task folder's records and images back
    return_s         the result reaching the driver (object store)
    images_write_s   the driver writing the images into the run folder

The machine is shared with other work: the load average before and after each sweep is printed
with the figures, and they are only as quiet as it was.

    .venv/bin/python benchmarks/ray_overhead.py                 # 8 cells
    .venv/bin/python benchmarks/ray_overhead.py --cells 4 --json ray.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER_START_S = 1.0  # a process start longer than this was a warm server starting
PARTS = ("setup_s", "process_start_s", "collect_s", "return_s", "images_write_s")


def write_config(folder: Path, cells: int) -> Path:
    import yaml

    config = {
        "name": "ray-overhead",
        "model": {"source": "synthetic", "preset": "tiny", "seed": 0},
        "variants": [{"name": f"f{i}", "kind": "full", "dtype": "float32"} for i in range(cells)],
        "offload": ["none"],
        "prompts": [
            {"id": "city", "text": "a futuristic city at sunset with neon lights"},
            {"id": "chip", "text": "macro photo of a chip with blue light"},
        ],
        "repeats": 1,
        "seed": 42,
        "height": 64,
        "width": 64,
        "steps": 2,
        "max_sequence_length": 32,
        "warmup": 1,
        "device": "cpu",
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def driver_write(image_bytes: int = 1_500_000, images: int = 24) -> dict[str, float]:
    """How fast the driver writes images the way it writes a Ray result (write_file_atomic:
    temporary file, fsync, rename, folder fsync) at the size of a 1024 px PNG (~1.5 MB)."""
    from bench.results import write_file_atomic

    payload = os.urandom(image_bytes)
    with tempfile.TemporaryDirectory(prefix="ray-overhead-write-") as tmp:
        start = time.monotonic()
        for index in range(images):
            path = Path(tmp) / f"{index}.png"
            write_file_atomic(path, lambda handle: handle.write(payload))
        elapsed = time.monotonic() - start
    return {
        "image_bytes": image_bytes,
        "images": images,
        "s_per_image": elapsed / images,
        "mb_per_s": image_bytes * images / elapsed / 1e6,
    }


def measure(cells: int, slots: int) -> dict[str, Any]:
    import ray
    from rich.console import Console

    from bench.results import read_records
    from bench.runner.executor import run_config
    from bench.runner.executor_choice import ExecutorChoice

    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet = Console(file=open(os.devnull, "w"), force_terminal=False)  # noqa: SIM115
    out: dict[str, Any] = {"cells": cells, "slots": slots, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as tmp:
        folder = Path(tmp)
        config = write_config(folder, cells)
        # Ray first: ray.init sets variables in this process, and the driver's warm cell server
        # restarts when its environment changes (bench.runner.processes); started after it,
        # the server is started once, by the warm-up run, for both sweeps.
        start = time.monotonic()
        ray.init(num_cpus=slots, include_dashboard=False, log_to_driver=False)
        out["ray_init_s"] = time.monotonic() - start
        # Builds the synthetic base once (and warms the page cache), for both executors.
        run_config(config, folder / "warm", only=["f0"], console=quiet)
        out["load_before_local"] = load()
        start = time.monotonic()
        local = run_config(config, folder / "local", console=quiet)
        out["local_wall_s"] = time.monotonic() - start
        out["load_before_ray"] = load()
        begin = time.monotonic()
        remote = run_config(config, folder / "ray", console=quiet, executor=ExecutorChoice("ray"))
        out["ray_sweep_wall_s"] = time.monotonic() - begin
        ray.shutdown()
        out["ray_wall_s"] = out["ray_sweep_wall_s"] + out["ray_init_s"]
        out["load_after"] = load()
        ok = [r["status"] for r in read_records(local)] == [
            r["status"] for r in read_records(remote)
        ]
        out["same_statuses"] = ok
        timings = [r["ray"] for r in read_records(remote) if r["kind"] == "cell" and "ray" in r]
        # The cells' own figures under each executor: slower cells under Ray are contention
        # (two cells and Ray's processes on this machine's cores), not scheduling.
        for name, run in (("local", local), ("ray", remote)):
            records = read_records(run)
            out[f"{name}_cell_figures"] = {
                "median_load_s": statistics.median(
                    r["load_s"] for r in records if r["kind"] == "cell"
                ),
                "median_image_wall_s": statistics.median(
                    r["wall_s"] for r in records if r["kind"] == "image"
                ),
            }
    timings.sort(key=lambda t: t["queued_s"])
    out["per_cell"] = timings
    # All cells are submitted at once: the first `slots` to start found a free slot, so their
    # queue time is scheduling (and a Ray worker's start); the others' is mostly waiting.
    first = timings[:slots]
    # A Ray worker's first cell starts its warm server (imports, seconds); later cells fork.
    cold = [t for t in timings if t["process_start_s"] > SERVER_START_S]
    warm = [t for t in timings if t["process_start_s"] <= SERVER_START_S] or timings
    out["cold_cells"] = len(cold)
    out["median"] = {
        "queued_s_first_cells": statistics.median(t["queued_s"] for t in first),
        "process_start_s_cold": statistics.median(t["process_start_s"] for t in cold or warm),
        **{part: statistics.median(t[part] for t in warm) for part in PARTS},
        "cell_s": statistics.median(t["cell_s"] for t in timings),
    }
    steady = {k: v for k, v in out["median"].items() if k in PARTS}
    out["per_cell_overhead_s_steady"] = sum(steady.values())
    out["driver_write"] = driver_write()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = measure(args.cells, args.slots)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['cells']} cells, {result['slots']} Ray slots, {result['cpus']} CPUs")
    print(
        f"load average before local / before Ray / after: {result['load_before_local']} / "
        f"{result['load_before_ray']} / {result['load_after']}"
    )
    print(f"local executor wall:        {result['local_wall_s']:7.2f} s")
    print(f"Ray: ray.init               {result['ray_init_s']:7.2f} s")
    print(f"Ray: sweep                  {result['ray_sweep_wall_s']:7.2f} s")
    print(f"Ray: init + sweep           {result['ray_wall_s']:7.2f} s")
    for name in ("local", "ray"):
        figures = result[f"{name}_cell_figures"]
        print(
            f"{name:5s} cells: median load {figures['median_load_s']:.3f} s, "
            f"median image {figures['median_image_wall_s']:.3f} s"
        )
    for key, value in result["median"].items():
        print(f"  median {key:34s} {value:7.3f} s")
    print(
        f"per-cell overhead, steady state (sum of medians): "
        f"{result['per_cell_overhead_s_steady']:.3f} s"
    )
    write = result["driver_write"]
    print(
        f"driver writes a {write['image_bytes'] / 1e6:.1f} MB image in "
        f"{write['s_per_image']:.4f} s "
        f"({write['mb_per_s']:.0f} MB/s, fsync'd)"
    )
    print(f"same statuses under both executors: {result['same_statuses']}")


if __name__ == "__main__":
    main()
