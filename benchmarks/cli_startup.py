"""How fast each `bench` command answers: wall time, peak RSS and the heavy libraries it
imported, for every command's --help and for the everyday queries.

    .venv/bin/python benchmarks/cli_startup.py [--rounds 3] [--run-dir results/<run-id>]

Each case runs `bench` in a fresh process `--rounds` times; the best wall time and the largest
peak RSS are printed (the best time is the one least disturbed by other jobs). The heavy modules
are read from the process itself: a `sitecustomize` on PYTHONPATH writes `sys.modules` at exit.
Goals (issue 23, this 2-core machine, idle): `bench --help` <= 0.5 s, a `bench size` query
on a built-in model <= 2 s, `bench report` of the demo run <= 5 s. `bench inspect` reads a small
GGUF file written here (gguf's own writer: a Q8_0 and an F32 tensor).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

HEAVY = ("torch", "diffusers", "transformers", "torchao", "bitsandbytes", "optimum", "ray",
         "pandas", "scipy", "matplotlib", "torchmetrics")  # fmt: skip
BENCH = Path(sys.executable).parent / "bench"
HELP = ("run", "score", "report", "compare", "matrix", "size", "quantize", "inspect", "env")

SITECUSTOMIZE = """
import atexit, json, os, sys
def _dump():
    heavy = {HEAVY!r}
    with open(os.environ["BENCH_STARTUP_MODULES"], "w") as handle:
        json.dump(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy)), handle)
atexit.register(_dump)
"""


def measure(args: list[str], rounds: int, folder: Path) -> tuple[float, float, list[str], int]:
    """Best wall seconds, largest peak RSS (MiB), heavy modules, exit code."""
    modules_file = folder / "modules.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])),
        "BENCH_STARTUP_MODULES": str(modules_file),
    }
    best, rss, code = float("inf"), 0.0, 0
    for _ in range(rounds):
        start = time.perf_counter()
        process = subprocess.Popen(
            [str(BENCH), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        _, status, usage = os.wait4(process.pid, 0)
        best = min(best, time.perf_counter() - start)
        rss = max(rss, usage.ru_maxrss / 1024)
        code = os.waitstatus_to_exitcode(status)
    heavy = json.loads(modules_file.read_text()) if modules_file.is_file() else ["?"]
    return best, rss, heavy, code


def small_gguf(path: Path) -> Path:
    """A two-tensor GGUF file for the `bench inspect` case."""
    writer = GGUFWriter(str(path), "flux")
    weight = np.random.default_rng(0).standard_normal((256, 256), dtype=np.float32)
    q8 = GGMLQuantizationType.Q8_0
    writer.add_tensor("blocks.0.weight", quantize(weight, q8), raw_dtype=q8)
    writer.add_tensor("blocks.0.bias", np.zeros(256, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run-dir", type=Path, help="a run folder for the report case")
    options = parser.parse_args()
    cases = [["--help"], *[[command, "--help"] for command in HELP]]
    cases += [
        ["size", "--model", "flux-dev", "--vram", "16GiB"],
        ["size", "--model", "wan2.1-t2v-14b", "--vram", "24GiB"],
        ["env"],
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(HEAVY=HEAVY))
        cases.append(["inspect", str(small_gguf(folder / "small.gguf"))])
        if options.run_dir is not None:
            cases.append(["report", str(options.run_dir), "--out", str(folder / "report")])
        print(f"{'command':<48} {'best s':>7} {'peak MiB':>9}  exit  heavy modules imported")
        for args in cases:
            seconds, rss, heavy, code = measure(args, options.rounds, folder)
            label = "bench " + " ".join(args)
            print(
                f"{label[:48]:<48} {seconds:7.2f} {rss:9.0f}  {code:4d}  {', '.join(heavy) or '-'}"
            )


if __name__ == "__main__":
    main()
