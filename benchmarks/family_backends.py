"""Every quantization backend on every model family: which run, which fail and why, and how far
each lands from full precision (PSNR), on the tiny synthetic pipelines.

Takes configs/backends-tiny.yaml (one variant of every backend and scheme), points it at each
registered family's tiny preset (quantizing the denoiser only, the component every family has),
runs it with offload none through the real runner, scores PSNR and prints one table: family ×
variant → status (or the error type and the first words of its message) and PSNR in dB. On a
machine without a GPU, bitsandbytes and torchao int4 fail with their libraries' own errors; that
is the answer for this machine, recorded, not skipped.

    .venv/bin/python benchmarks/family_backends.py [--families flux sd3 qwen_image wan] [--keep DIR]

Statuses and PSNR do not depend on machine load; times are not printed for that reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE = {"flux": 128, "sd3": 128, "qwen_image": 128, "wan": 64}  # sides each tiny model runs at


def family_config(family: str, frames: int) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "configs" / "backends-tiny.yaml").read_text())
    config["name"] = f"backends-tiny-{family.replace('_', '-')}"
    config["model"]["family"] = family
    config["prompts"] = {"file": str(ROOT / "configs" / "prompts" / "blog.yaml")}
    config.update(repeats=1, warmup=0, offload=["none"], height=SIZE[family], width=SIZE[family])
    for variant in config["variants"]:
        if "components" in variant:
            variant["components"] = ["transformer"]
    if family == "wan":
        config["num_frames"] = frames
    return config


def run_family(family: str, folder: Path, frames: int) -> dict[str, dict[str, Any]]:
    from bench.results import cell_records, read_records
    from bench.runner.executor import run_config
    from bench.scoring import SCORES_SUMMARY, score_run

    path = folder / f"{family}.yaml"
    path.write_text(yaml.safe_dump(family_config(family, frames)))
    run_dir = run_config(path, folder / "results")
    score_run(run_dir, ["psnr"], progress=False)
    summary = json.loads((run_dir / SCORES_SUMMARY).read_text())["cells"]
    psnr = {r["variant"]: r for r in summary if r["metric"] == "psnr"}
    out = {}
    for record in cell_records(read_records(run_dir)).values():
        error = record.get("error") or {}
        row = psnr.get(record["variant"], {})
        out[record["variant"]] = {
            "status": record["status"],
            "error": f"{error.get('type')}: {str(error.get('message'))[:60]}" if error else None,
            "psnr": row.get("mean"),
            "psnr_status": row.get("status"),
        }
    return out


def cell_text(result: dict[str, Any]) -> str:
    if result["status"] != "ok":
        return f"failed ({result['error']})"
    if result["psnr"] is not None:
        return f"{result['psnr']:.1f} dB"
    return str(result["psnr_status"])


def main() -> None:
    from bench.families import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--frames", type=int, default=5, help="frames per video (Wan)")
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="family-backends-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = {family: run_family(family, folder, args.frames) for family in args.families}
    variants = list(dict.fromkeys(v for r in results.values() for v in r))
    print("| variant | " + " | ".join(FAMILIES[f].title for f in args.families) + " |")
    print("|---|" + "---|" * len(args.families))
    for variant in variants:
        cells = [
            cell_text(results[f][variant]) if variant in results[f] else "–" for f in args.families
        ]
        print(f"| {variant} | " + " | ".join(cells) + " |")
    print(f"\nrun folders: {folder}")


if __name__ == "__main__":
    main()
