"""What the harness costs: the same generations by a plain diffusers script and by `bench run`.

The plain script is what a user writes without the harness (like the blog post's): load the
pipeline, one warm-up call, N images, save the PNGs. `bench run` does the same as one cell of a
one-variant config. Both run as fresh processes, alternating, and are timed end to end (process
start to exit, as a user waits for it); per image, the plain script's own timing of each call is
set against the `wall_s` that `bench` records. Goals: end to end at most 1.10 times the plain
script, per-image times within 5%.

    .venv/bin/python benchmarks/overhead.py                  # 3 rounds, 4 images of 256x256
    .venv/bin/python benchmarks/overhead.py --rounds 5 --variant Q8_0
    .venv/bin/python benchmarks/overhead.py --checkout /tmp/old   # another commit's bench

The pipeline is the synthetic tiny FLUX from the harness cache (built first if absent).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "configs" / "prompts" / "blog.yaml"
END_TO_END_GOAL = 1.10
PER_IMAGE_GOAL = 0.05

PLAIN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import torch
    from diffusers import DiffusionPipeline, FluxTransformer2DModel, GGUFQuantizationConfig

    job = json.loads(sys.argv[1])
    kwargs = {}
    if job["gguf"]:
        kwargs["transformer"] = FluxTransformer2DModel.from_single_file(
            job["gguf"],
            quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
            config=job["base"],
            subfolder="transformer",
            torch_dtype=torch.float32,
        )
    pipe = DiffusionPipeline.from_pretrained(job["base"], torch_dtype=torch.float32, **kwargs)
    pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)


    def generate(prompt, seed):
        return pipe(
            prompt,
            height=job["size"],
            width=job["size"],
            num_inference_steps=job["steps"],
            guidance_scale=3.5,
            max_sequence_length=128,
            generator=torch.Generator("cpu").manual_seed(seed),
        ).images[0]


    generate(job["images"][0]["prompt"], 0)  # warm-up
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    times = []
    for image in job["images"]:
        start = time.perf_counter()
        picture = generate(image["prompt"], image["seed"])
        times.append(time.perf_counter() - start)
        picture.save(out / f"{image['prompt_id']}__r{image['repeat']}.png")
    print(json.dumps(times))
    """
)


def _config(args: argparse.Namespace) -> dict:
    variant = (
        {"name": "full-fp32", "kind": "full", "dtype": "float32"}
        if args.variant == "full"
        else {
            "name": args.variant,
            "kind": "gguf",
            "quant": args.variant,
            "compute_dtype": "float32",
        }
    )
    return {
        "name": "overhead",
        "model": {"source": "synthetic", "preset": "tiny", "seed": 0},
        "variants": [variant],
        "offload": ["none"],
        "prompts": {"file": str(PROMPTS)},
        "repeats": max(1, args.images // 2),
        "seed": 42,
        "height": args.size,
        "width": args.size,
        "steps": args.steps,
        "guidance": 3.5,
        "max_sequence_length": 128,
        "warmup": 1,
        "device": "cpu",
    }


def _plain_job(config_path: Path, variant: str, work: Path) -> dict:
    """The plain script's inputs: the same pipeline files, prompts, seeds and sizes."""
    from bench.backends.gguf import make_gguf_from_base
    from bench.cells import expand_images, resolve_prompts
    from bench.config import load_config
    from bench.families.synthetic import ensure_synthetic_pipeline

    config, config_dir = load_config(config_path)
    prompts = resolve_prompts(config, config_dir)
    text = {p.id: p.text for p in prompts}
    base = ensure_synthetic_pipeline("tiny", 0)
    gguf = None if variant == "full" else str(make_gguf_from_base(base, variant))
    images = [
        {"prompt_id": i.prompt_id, "repeat": i.repeat, "seed": i.seed, "prompt": text[i.prompt_id]}
        for i in expand_images(config, prompts)
    ]
    return {
        "base": str(base),
        "gguf": gguf,
        "size": config.height,
        "steps": config.steps,
        "images": images,
        "out": str(work / "plain"),
    }


def _timed(command: list[str], cwd: Path | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{command[:3]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def _bench_round(config_path: Path, out: Path, checkout: Path | None) -> tuple[float, list[float]]:
    # Another checkout (an older commit, say) runs as `python -m bench` from its folder.
    bench = (
        [sys.executable, "-m", "bench"]
        if checkout
        else [str(Path(sys.executable).with_name("bench"))]
    )
    before = set(out.glob("*")) if out.exists() else set()
    elapsed, _ = _timed(
        [*bench, "run", str(config_path), "--out", str(out), "--no-score"], checkout
    )
    (run_dir,) = set(out.glob("*")) - before
    walls = []
    for line in (run_dir / "records.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "image":
            walls.append(record["wall_s"])
    return elapsed, walls


def _ratio_line(label: str, ratio: float, goal: str, met: bool) -> str:
    return f"{label:<22} {ratio:6.3f}x   goal {goal:<10} {'met' if met else 'NOT MET'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=4, help="images per run (even)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variant", default="full", choices=["full", "Q8_0", "Q6_K", "Q4_K"])
    parser.add_argument(
        "--checkout", type=Path, help="time the bench of this source folder (python -m bench)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        work = Path(tmp)
        config_path = work / "overhead.yaml"
        config_path.write_text(yaml.safe_dump(_config(args), sort_keys=False))
        job = json.dumps(_plain_job(config_path, args.variant, work))  # also builds the cache
        plain_command = [sys.executable, "-c", PLAIN_SCRIPT, job]
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        rows = []
        for round_index in range(args.rounds):
            # Alternate which goes first, so a drift in machine load falls on both.
            order = ("plain", "bench") if round_index % 2 == 0 else ("bench", "plain")
            row: dict = {}
            for which in order:
                if which == "plain":
                    elapsed, stdout = _timed(plain_command)
                    row["plain"] = (elapsed, json.loads(stdout.strip().splitlines()[-1]))
                else:
                    row["bench"] = _bench_round(config_path, work / "results", args.checkout)
            rows.append(row)
            (pe, pi), (be, bi) = row["plain"], row["bench"]
            print(
                f"round {round_index + 1}: end to end plain {pe:6.2f} s, bench {be:6.2f} s "
                f"({be / pe:.3f}x); median per image plain {statistics.median(pi):.3f} s, "
                f"bench {statistics.median(bi):.3f} s",
                flush=True,
            )
        load_after = Path("/proc/loadavg").read_text().split()[:3]

    plain_e2e = statistics.median(r["plain"][0] for r in rows)
    bench_e2e = statistics.median(r["bench"][0] for r in rows)
    plain_img = statistics.median(t for r in rows for t in r["plain"][1])
    bench_img = statistics.median(t for r in rows for t in r["bench"][1])
    e2e, per_image = bench_e2e / plain_e2e, bench_img / plain_img
    print(
        f"\n{args.rounds} rounds, {len(rows[0]['bench'][1])} images of {args.size}x{args.size}, "
        f"{args.steps} steps, variant {args.variant}; load average {' '.join(load_before)} "
        f"before, {' '.join(load_after)} after"
    )
    print(f"median end to end: plain {plain_e2e:.2f} s, bench {bench_e2e:.2f} s")
    print(f"median per image:  plain {plain_img:.3f} s, bench {bench_img:.3f} s")
    print(_ratio_line("end to end", e2e, f"<= {END_TO_END_GOAL:.2f}x", e2e <= END_TO_END_GOAL))
    print(
        _ratio_line(
            "per image", per_image, f"within {PER_IMAGE_GOAL:.0%}", abs(per_image - 1) <= 0.05
        )
    )


if __name__ == "__main__":
    main()
