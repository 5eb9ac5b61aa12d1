"""A/A calibration of `bench compare` on real runs of this machine.

K pairs of real, identical `bench run CONFIG --no-score` runs, one after the other. Each pair
(A, B) is compared with the default thresholds: any regression is a false one, since nothing
changed. Then B is planted, as copies of its run folder: every time x1.3 (wall, steps,
encode, decode, load, warm-up), and, per memory counter, every peak of that counter x1.2 (NVML
net of the cell's baseline). Each plant is compared with A, B's twin (the known change on top
of real A/A noise, as a real regression meets its baseline), and with B, its own source (the
change alone: the rule's sensitivity). The time plant scales the memory sampler's readings with
the times, as a slower image on an equally loaded machine has them. Printed per aspect (time,
energy where measured, each memory counter, quality where scored): the share of pairs with a
false regression, and the share of cells whose plant was caught (plus those judged "too noisy
to judge at this threshold", which is not a catch), with K, the config, the machine and its
load average around every run.

Goal printed at the end: A/A false regressions <= 5% of pairs, plants caught 100%.

    .venv/bin/python benchmarks/compare_aa.py             # 6 pairs of configs/calibration.yaml
    .venv/bin/python benchmarks/compare_aa.py --pairs 20 --json aa.json --keep results/aa
    .venv/bin/python benchmarks/compare_aa.py --quick                # 1 pair of a 64 px config
    .venv/bin/python benchmarks/compare_aa.py --from results/aa      # re-judge kept runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

from bench.cell_summary import MEMORY_COUNTERS  # noqa: E402
from bench.comparison.memory import counter_name  # noqa: E402
from bench.comparison.stability import MAX_OTHERS_SHARE, MAX_SAMPLER_SHIFT, sampler_shift  # noqa: E402
from bench.comparison.stats import BIGGER, REGRESSION_WORDS, SLOWER, TOO_NOISY  # noqa: E402
from bench.comparison.verdicts import Comparison, Thresholds, compare_runs  # noqa: E402
from bench.results import MANIFEST, RECORDS  # noqa: E402

TIME_PLANT = 1.3
MEMORY_PLANT = 1.2
GOAL_FALSE = 0.05
DEFAULT_CONFIG = ROOT / "configs" / "calibration.yaml"
TIME_KEYS = ("wall_s", "encode_s", "decode_s", "load_s", "first_call_s")
TIME_LISTS = ("step_s", "warmup_s")
NVML = "nvml_used_peak_bytes"
RUNS_LOG = "runs.jsonl"  # in a --keep folder: each run's wall time and load average
# The --quick config: one pair of a two-cell run that takes seconds per cell on a quiet CPU.
QUICK_CONFIG = """\
name: calibration-quick
description: compare_aa.py --quick (sanity check of the script, not a calibration)
model: {source: synthetic, preset: tiny, seed: 0}
variants:
  - {name: full-fp32, kind: full, dtype: float32}
  - {name: Q8_0, kind: gguf, quant: Q8_0, compute_dtype: float32}
offload: [none]
prompts:
  - {id: quick-a, text: "a red cube on a table"}
  - {id: quick-b, text: "a lighthouse at night"}
repeats: 3
height: 64
width: 64
steps: 2
max_sequence_length: 32
warmup: 1
device: auto
"""


@dataclass
class RunInfo:
    run_dir: Path
    wall_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


@dataclass
class Plants:
    """Plant outcomes of one aspect, per cell."""

    cells: int = 0
    caught: int = 0
    noisy: int = 0
    missed: list[str] = field(default_factory=list)

    def text(self) -> tuple[str, str, str]:
        if not self.cells:
            return "not planted", "-", "-"
        return (
            f"{self.caught}/{self.cells} ({self.caught / self.cells:.0%})",
            f"{self.noisy}/{self.cells}",
            str(self.cells - self.caught - self.noisy),
        )


# A plant on run B is compared with A, its twin (the change on top of real A/A noise, as a
# real regression meets its baseline), and with B, its source (the change alone: the rule's
# sensitivity).
MODES = ("twin", "source")


@dataclass
class Tally:
    """One aspect over all pairs: A/A outcomes per pair and plant outcomes per cell."""

    pairs: int = 0
    false_pairs: int = 0
    aa_cells: int = 0
    aa_noisy: int = 0
    plants: dict[str, Plants] = field(default_factory=lambda: {m: Plants() for m in MODES})
    # Memory: B's median per-image peak over A's, per cell, for the band these runs suggest.
    # Time: the memory sampler's rate in B against A's, per cell (stability.sampler_shift).
    aa_ratios: list[float] = field(default_factory=list)
    # Time: the share of the processors other processes took (median over a cell's images),
    # every cell of both runs of every pair (stability.MAX_OTHERS_SHARE).
    others_shares: list[float] = field(default_factory=list)
    # Time: B's median per-image time over A's, per cell (for the time band these runs suggest).
    time_ratios: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "plants"}
        out["plants"] = {mode: dict(p.__dict__) for mode, p in self.plants.items()}
        return out


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform()}


def bench_run(config: Path, out: Path, log: Path) -> RunInfo:
    """One real `bench run CONFIG --out OUT --no-score` in a fresh process; its run folder."""
    before, start = loadavg(), time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    command = [sys.executable, "-m", "bench", "run", str(config), "--out", str(out), "--no-score"]
    with log.open("w", encoding="utf-8") as handle:
        rc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - start
    runs = [p.parent for p in out.glob(f"*/{MANIFEST}")]
    if rc != 0 or len(runs) != 1:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        raise SystemExit(f"error: `{' '.join(command)}` exited {rc}: " + " | ".join(tail))
    return RunInfo(runs[0], wall, before, loadavg())


def plant(run_dir: Path, dest: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of a run folder (manifest, records; no images) with every record changed."""
    dest.mkdir(parents=True)
    shutil.copy2(run_dir / MANIFEST, dest / MANIFEST)
    for name in ("scores.jsonl",):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    lines = (run_dir / RECORDS).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    for record in records:
        change(record)
    (dest / RECORDS).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return dest


def slower(factor: float) -> Callable[[dict[str, Any]], None]:
    """Every time x factor. The memory sampler's readings too: it reads every 5 ms, so on an
    equally loaded machine a slower image gets proportionally more readings (bench compare
    reads their rate as the machine's load; unscaled, the copy would look like a busier run).
    Likewise the CPU seconds of the cell and of other processes (`cpu`): a slower image on an
    equally loaded machine gives both proportionally more, so their share stays the same."""

    def change(record: dict[str, Any]) -> None:
        for key in TIME_KEYS:
            if isinstance(record.get(key), (int, float)):
                record[key] = record[key] * factor
        for key in TIME_LISTS:
            if isinstance(record.get(key), list):
                record[key] = [v * factor for v in record[key]]
        cpu = record.get("cpu")
        if isinstance(cpu, dict):
            for key in ("process_s", "harness_s", "others_s"):
                if isinstance(cpu.get(key), (int, float)):
                    cpu[key] = cpu[key] * factor
        memory = record.get("memory") or {}
        phases = [memory] if record.get("kind") == "image" else list(memory.values())
        for phase in phases:
            if isinstance(phase, dict) and isinstance(phase.get("samples"), int):
                phase["samples"] = round(phase["samples"] * factor)

    return change


def bigger(key: str, factor: float) -> Callable[[dict[str, Any]], None]:
    """Every peak of one counter x factor, in every phase; NVML scaled net of the baseline."""

    def scale(peaks: dict[str, Any] | None, baseline: int | None) -> None:
        if not peaks or peaks.get(key) is None:
            return
        offset = baseline if key == NVML and baseline is not None else 0
        peaks[key] = round(offset + (peaks[key] - offset) * factor)

    def change(record: dict[str, Any]) -> None:
        memory = record.get("memory") or {}
        if record.get("kind") == "cell":
            baseline = (memory.get("baseline") or {}).get("nvml_used_bytes")
            for phase in ("load", "warmup"):
                scale(memory.get(phase), baseline)
        else:
            scale(memory, record.get("_baseline"))

    return change


def with_baselines(change: Callable[[dict[str, Any]], None], run_dir: Path) -> Callable:
    """Image records do not carry the cell's NVML baseline; hand it over for the plant."""
    baselines: dict[str, int] = {}
    for line in (run_dir / RECORDS).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") == "cell":
            value = ((record.get("memory") or {}).get("baseline") or {}).get("nvml_used_bytes")
            if value is not None:
                baselines[record["cell_id"]] = int(value)

    def wrapped(record: dict[str, Any]) -> None:
        if record.get("kind") == "image":
            record["_baseline"] = baselines.get(record["cell_id"])
        change(record)
        record.pop("_baseline", None)

    return wrapped


def measured_counters(run_dir: Path) -> list[str]:
    keys: set[str] = set()
    for line in (run_dir / RECORDS).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") == "image" and record.get("status") == "ok":
            keys |= {k for k in (record.get("memory") or {}) if k.endswith("_bytes")}
    return [key for key, _label in MEMORY_COUNTERS if key in keys]


def aspect_verdicts(comparison: Comparison) -> dict[str, dict[str, str]]:
    """aspect -> cell -> verdict; memory per counter (a growth in any phase counts)."""
    out: dict[str, dict[str, str]] = {}
    for cell in comparison.cells:
        if cell.base_status != "ok" or cell.cand_status != "ok":
            continue
        if cell.time is not None:
            out.setdefault("time", {})[cell.cell_id] = cell.time.verdict
        if cell.energy is not None and cell.energy.verdict != "not measured":
            out.setdefault("energy", {})[cell.cell_id] = cell.energy.verdict
        for key, _label in MEMORY_COUNTERS:
            verdicts = [v for v in cell.memory_counters if v.key == key]
            if not verdicts:
                continue
            words = {v.verdict for v in verdicts}
            images = next((v.verdict for v in verdicts if v.phase == "images"), None)
            word = BIGGER if BIGGER in words else images or verdicts[0].verdict
            out.setdefault(f"memory:{counter_name(key)}", {})[cell.cell_id] = word
        for q in cell.quality:
            out.setdefault(f"quality:{q.metric}", {})[cell.cell_id] = q.verdict
    return out


def print_table(tallies: dict[str, Tally]) -> None:
    header = (
        f"{'aspect':<18} {'A/A false regr.':>16} {'A/A too noisy':>14} | "
        f"{'plant vs twin: caught':>22} {'too noisy':>10} {'missed':>7} | "
        f"{'plant vs source: caught':>24} {'missed':>7}"
    )
    print(f"{'':<18} {'(pairs)':>16} {'(cells)':>14} | {'(cells)':>22}")
    print(header)
    print("-" * len(header))
    for aspect, t in tallies.items():
        false = f"{t.false_pairs}/{t.pairs} ({t.false_pairs / max(t.pairs, 1):.0%})"
        noisy = f"{t.aa_noisy}/{t.aa_cells}"
        twin, twin_noisy, twin_missed = t.plants["twin"].text()
        source, _source_noisy, source_missed = t.plants["source"].text()
        print(
            f"{aspect:<18} {false:>16} {noisy:>14} | {twin:>22} {twin_noisy:>10} "
            f"{twin_missed:>7} | {source:>24} {source_missed:>7}"
        )


def suggested_bands(tallies: dict[str, Tally], cells_per_pair: int) -> None:
    """Per memory counter, the A/A band these pairs call for: the root mean square of the
    log-ratios (identical runs: centred on 0) and the band that noise alone would cross in
    at most 5% of pairs of this many cells (normal log-ratios, one-sided)."""
    for aspect, t in tallies.items():
        if aspect == "time" and t.aa_ratios:
            shifts = np.asarray(t.aa_ratios)
            print(
                f"time: memory sampler rate of the A/A runs ×{shifts.min():.3f}..×"
                f"{shifts.max():.3f} apart over {shifts.size} cells (median ×"
                f"{np.median(shifts):.3f}); above ×{MAX_SAMPLER_SHIFT:g} the time verdict is "
                f"too noisy (the machine was busier in one run)"
            )
        if aspect == "time" and t.others_shares:
            shares = np.asarray(t.others_shares)
            idle = int((shares <= MAX_OTHERS_SHARE).sum())
            print(
                f"time: other processes took {shares.min():.1%}..{shares.max():.1%} of the "
                f"processors during a cell's images (median {np.median(shares):.1%}); "
                f"{idle}/{shares.size} cells at or below {MAX_OTHERS_SHARE:.0%}, where times "
                f"are judged"
            )
        if aspect == "time" and len(t.time_ratios) >= 2:
            print(_band_line("time", t.time_ratios, cells_per_pair, "--time-band cpu"))
        if not aspect.startswith("memory:") or len(t.aa_ratios) < 2:
            continue
        logs = np.log(np.asarray(t.aa_ratios))
        rms = float(np.sqrt(np.mean(logs**2)))
        per_cell = 1.0 - (1.0 - GOAL_FALSE) ** (1.0 / max(cells_per_pair, 1))
        band = float(np.exp(norm.ppf(1.0 - per_cell) * rms))
        print(
            f"{aspect}: A/A ratio of per-image medians ×{min(t.aa_ratios):.3f}..×"
            f"{max(t.aa_ratios):.3f} over {len(t.aa_ratios)} cells, rms log-ratio {rms:.1%}: "
            f"a band of ×{band:.3f} is crossed by noise in <= {GOAL_FALSE:.0%} of pairs "
            f"(--memory-band {aspect.split(':', 1)[1]}={band:.2f})"
        )


def _band_line(what: str, ratios: list[float], cells_per_pair: int, option: str) -> str:
    """The A/A spread of `ratios` and the band that noise alone would cross in at most 5% of
    pairs of this many cells (normal log-ratios, one-sided), as for the memory counters."""
    logs = np.log(np.asarray(ratios))
    rms = float(np.sqrt(np.mean(logs**2)))
    per_cell = 1.0 - (1.0 - GOAL_FALSE) ** (1.0 / max(cells_per_pair, 1))
    band = float(np.exp(norm.ppf(1.0 - per_cell) * rms))
    return (
        f"{what}: A/A ratio of per-image medians ×{min(ratios):.3f}..×{max(ratios):.3f} over "
        f"{len(ratios)} cells, rms log-ratio {rms:.1%}: a band of ×{band:.3f} is crossed by "
        f"noise in <= {GOAL_FALSE:.0%} of pairs ({option}={band:.2f})"
    )


def run_log(run: RunInfo) -> dict[str, Any]:
    return {
        "run_dir": str(run.run_dir),
        "wall_s": round(run.wall_s, 1),
        "loadavg_before": run.load_before,
        "loadavg_after": run.load_after,
    }


def judge_pair(
    i: int, a: Path, b: Path, work: Path, thresholds: Thresholds, tallies: dict[str, Tally]
) -> dict[str, Any]:
    """Compare A with B (A/A) and with B's plants; add the outcomes to `tallies`."""
    aa = compare_runs(a, b, thresholds)
    aa_verdicts = aspect_verdicts(aa)
    for cell_id, base_cell in aa.base.cells.items():
        cand_cell = aa.cand.cells.get(cell_id)
        shift = sampler_shift(base_cell.sampler_hz, cand_cell.sampler_hz) if cand_cell else None
        if shift is not None:
            tallies.setdefault("time", Tally()).aa_ratios.append(shift)
        for side in (base_cell, cand_cell):
            if side is not None and side.others_share:
                share = float(np.median(side.others_share))
                tallies.setdefault("time", Tally()).others_shares.append(share)
    for cell in aa.cells:
        if cell.time is not None and cell.time.ratio is not None:
            tallies.setdefault("time", Tally()).time_ratios.append(cell.time.ratio)
        for v in cell.memory_counters:
            if v.phase == "images" and v.ratio is not None and v.key is not None:
                aspect = f"memory:{counter_name(v.key)}"
                tallies.setdefault(aspect, Tally()).aa_ratios.append(v.ratio)
    plants: dict[str, Path] = {
        "time": plant(b, work / f"pair{i:02d}-plant-time", slower(TIME_PLANT))
    }
    for key in measured_counters(b):
        name = counter_name(key)
        dest = work / f"pair{i:02d}-plant-{name}"
        plants[f"memory:{name}"] = plant(b, dest, with_baselines(bigger(key, MEMORY_PLANT), b))
    record: dict[str, Any] = {
        "pair": i,
        "a": str(a),
        "b": str(b),
        "aa_exit_code": aa.exit_code,
        "aa": aa_verdicts,
        "aa_regressions": aa.regressions,
        "plants": {},
    }
    listed = ", ".join(f"{cell} {aspect}" for cell, aspect in aa.regressions) or "none"
    print(f"pair {i + 1}: A/A exit {aa.exit_code}, regressions: {listed}", flush=True)
    for aspect, cells in aa_verdicts.items():
        t = tallies.setdefault(aspect, Tally())
        t.pairs += 1
        t.false_pairs += any(v in REGRESSION_WORDS for v in cells.values())
        t.aa_cells += len(cells)
        t.aa_noisy += sum(v == TOO_NOISY for v in cells.values())
    for aspect, planted in plants.items():
        word = SLOWER if aspect == "time" else BIGGER
        for mode, base in (("twin", a), ("source", b)):
            verdicts = aspect_verdicts(compare_runs(base, planted, thresholds)).get(aspect, {})
            record["plants"].setdefault(mode, {})[aspect] = verdicts
            t = tallies.setdefault(aspect, Tally()).plants[mode]
            t.cells += len(verdicts)
            t.caught += sum(v == word for v in verdicts.values())
            t.noisy += sum(v == TOO_NOISY for v in verdicts.values())
            t.missed += [
                f"pair {i + 1} {cell} against its {mode}: {v}"
                for cell, v in verdicts.items()
                if v != word
            ]
    return record


def report(
    config: Path,
    info: dict[str, Any],
    thresholds: Thresholds,
    tallies: dict[str, Tally],
    details: list[dict[str, Any]],
    json_out: Path | None,
) -> int:
    """Print the table and the goal lines; write the JSON; 0 when both goals are met."""
    pairs = len(details)
    print()
    print(
        f"K={pairs} pairs, config {config.name}, {info['cpu']} ({info['cores']} cores), "
        f"load average now " + " ".join(f"{x:.2f}" for x in loadavg()) + "; "
        f"default thresholds (time ×{thresholds.time_factor:g}, memory ×"
        f"{thresholds.memory_factor:g} and {thresholds.memory_min_bytes >> 20} MiB); plants: "
        f"time ×{TIME_PLANT:g}, memory ×{MEMORY_PLANT:g} per counter"
    )
    print_table(tallies)
    cells_per_pair = max((len(c) for d in details for c in d["aa"].values()), default=1)
    suggested_bands(tallies, cells_per_pair)
    if not any(aspect.startswith("quality") for aspect in tallies):
        print("quality: not scored (runs are made with --no-score)")
    for t in tallies.values():
        for mode in MODES:
            for line in t.plants[mode].missed:
                print(f"not caught: {line}")
    false_pairs = sum(d["aa_exit_code"] == 1 for d in details)
    false_ok = false_pairs <= GOAL_FALSE * pairs
    print(
        f"goal A/A: false regressions in <= {GOAL_FALSE:.0%} of pairs: "
        f"{false_pairs}/{pairs} ({false_pairs / pairs:.0%}) {'PASS' if false_ok else 'FAIL'}"
    )
    caught_all = True
    for mode in MODES:
        cells = sum(t.plants[mode].cells for t in tallies.values())
        caught = sum(t.plants[mode].caught for t in tallies.values())
        noisy = sum(t.plants[mode].noisy for t in tallies.values())
        caught_all &= caught == cells
        print(
            f"goal plants against their {mode}: caught 100%: {caught}/{cells} "
            f"({caught / max(cells, 1):.0%}) {'PASS' if caught == cells else 'FAIL'}"
            + (f" ({noisy} too noisy to judge at this threshold)" if noisy else "")
        )
    if json_out is not None:
        payload = {
            "pairs": pairs,
            "config": str(config),
            "machine": info,
            "thresholds": {
                "time_factor": thresholds.time_factor,
                "memory_factor": thresholds.memory_factor,
                "memory_min_bytes": thresholds.memory_min_bytes,
                "memory_bands": thresholds.memory_bands,
            },
            "plants": {"time": TIME_PLANT, "memory": MEMORY_PLANT},
            "tallies": {k: t.as_dict() for k, t in tallies.items()},
            "false_pairs": false_pairs,
            "details": details,
        }
        json_out.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return 0 if false_ok and caught_all else 1


def judge_kept(folder: Path, json_out: Path | None) -> int:
    """Re-judge the pairs of a --keep folder with the current rules (no new runs)."""
    pairs = []
    for a_dir in sorted(folder.glob("pair*-a")):
        b_dir = a_dir.with_name(a_dir.name[:-1] + "b")
        a_runs = [p.parent for p in a_dir.glob(f"*/{MANIFEST}")]
        b_runs = [p.parent for p in b_dir.glob(f"*/{MANIFEST}")]
        finished = all(
            json.loads((run / MANIFEST).read_text()).get("finished_at") for run in a_runs + b_runs
        )
        if len(a_runs) == 1 and len(b_runs) == 1 and finished:
            pairs.append((a_runs[0], b_runs[0]))
    if not pairs:
        print(f"error: --from {folder}: no pairNN-a/pairNN-b run folders", file=sys.stderr)
        return 2
    config = Path(json.loads((pairs[0][0] / MANIFEST).read_text())["config_path"])
    logged: dict[int, Any] = {}
    if (folder / RUNS_LOG).exists():
        for line in (folder / RUNS_LOG).read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            logged[entry["pair"]] = entry["runs"]
    print(f"compare_aa: judging the {len(pairs)} kept pair(s) in {folder}")
    thresholds, tallies, details = Thresholds(), {}, []
    with tempfile.TemporaryDirectory(prefix="compare-aa-plants-") as tmp:
        for i, (a, b) in enumerate(pairs):
            for side, run in zip("ab", logged.get(i, []), strict=False):
                print(
                    f"pair {i + 1} {side}: {run['wall_s']:.0f} s, load average "
                    f"{run['loadavg_before'][0]:.2f} -> {run['loadavg_after'][0]:.2f}"
                )
            details.append(judge_pair(i, a, b, Path(tmp), thresholds, tallies))
            details[-1]["runs"] = logged.get(i)
    return report(config, machine(), thresholds, tallies, details, json_out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="K: pairs of identical runs")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--quick", action="store_true", help="1 pair of a 64 px 2-cell config")
    parser.add_argument("--keep", type=Path, help="write the runs here and keep them")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--from",
        dest="reuse",
        type=Path,
        help="judge the pairs a --keep folder already holds instead of running (no new runs)",
    )
    args = parser.parse_args(argv)
    if args.reuse is not None:
        return judge_kept(args.reuse, args.json)
    if args.pairs < 1:
        print(f"error: --pairs {args.pairs}: expected at least 1", file=sys.stderr)
        return 2
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        print(f"error: --keep {args.keep}: expected a new or empty folder", file=sys.stderr)
        return 2
    if not args.quick and not args.config.is_file():
        print(f"error: --config {args.config}: no such file", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="compare-aa-"))
    work.mkdir(parents=True, exist_ok=True)
    config, pairs = args.config, args.pairs
    if args.quick:
        config, pairs = work / "calibration-quick.yaml", 1
        config.write_text(QUICK_CONFIG, encoding="utf-8")
    config = config.resolve()
    thresholds = Thresholds()
    info = machine()
    print(
        f"compare_aa: K={pairs} pair(s) of `bench run {config} --no-score`; machine: "
        f"{info['cpu']}, {info['cores']} logical cores; load average at start "
        + " ".join(f"{x:.2f}" for x in loadavg())
    )
    tallies: dict[str, Tally] = {}
    details: list[dict[str, Any]] = []
    try:
        for i in range(pairs):
            runs = {}
            for side in ("a", "b"):
                out = work / f"pair{i:02d}-{side}"
                runs[side] = r = bench_run(config, out, work / f"pair{i:02d}-{side}.log")
                print(
                    f"pair {i + 1}/{pairs} {side}: {r.wall_s:.0f} s, load average "
                    f"{r.load_before[0]:.2f} -> {r.load_after[0]:.2f} ({r.run_dir.name})",
                    flush=True,
                )
            record = judge_pair(i, runs["a"].run_dir, runs["b"].run_dir, work, thresholds, tallies)
            record["runs"] = [run_log(runs["a"]), run_log(runs["b"])]
            with (work / RUNS_LOG).open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"pair": i, "runs": record["runs"]}) + "\n")
            details.append(record)
        return report(config, info, thresholds, tallies, details, args.json)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
