"""benchmarks/gpu_check.sh: its configs, its smoke mode end to end with a kill and a resume,
and the size check and report on records shaped as a CUDA run writes them."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
GIB = 1 << 30


def _cells(name: str) -> list[Any]:
    from bench.cells import expand_cells
    from bench.config import load_config

    config, _ = load_config(REPO / "configs" / name)
    return expand_cells(config)


def test_gpu_config_is_the_issued_sweep_in_value_order() -> None:
    from bench.config import load_config

    config, _ = load_config(REPO / "configs" / "gpu-check.yaml")
    assert (config.model.source, config.model.preset, config.device) == (
        "synthetic",
        "flux-dev",
        "cuda",
    )
    assert [(c.variant.name, c.offload.label) for c in _cells("gpu-check.yaml")] == [
        ("full-bf16", "none"),
        ("Q8_0", "none"),
        ("Q4_K", "none"),
        ("full-bf16", "model"),
        ("Q8_0", "model"),
        ("Q4_K", "model"),
        ("full-bf16", "group-leaf-stream"),
        ("Q8_0", "group-leaf-stream"),
        ("full-bf16", "sequential"),
        ("Q8_0", "sequential"),
    ]
    assert {(c.resolution.height, c.resolution.width) for c in _cells("gpu-check.yaml")} == {
        (1024, 1024)
    }
    assert (config.repeats, config.warmup, config.prompts.ids) == (2, 1, ["blog-city"])


def test_smoke_config_is_the_gpu_sweeps_twin() -> None:
    from bench.config import load_config

    def shape(name: str) -> list[tuple[str, str, str | None]]:
        return [
            (c.variant.kind, c.offload.label, getattr(c.variant, "quant", None))
            for c in _cells(name)
        ]

    assert shape("gpu-check-smoke.yaml") == shape("gpu-check.yaml")
    gpu, _ = load_config(REPO / "configs" / "gpu-check.yaml")
    smoke, _ = load_config(REPO / "configs" / "gpu-check-smoke.yaml")
    assert smoke.model.preset == "tiny"
    for key in ("prompts", "repeats", "warmup", "seed", "guidance"):
        assert getattr(smoke, key) == getattr(gpu, key), key


def test_builder_fills_the_same_bytes_on_any_number_of_threads() -> None:
    """The builder makes tensors on torch.get_num_threads() threads; the values must not
    depend on it (each tensor has its own generator)."""
    import torch

    from bench.families import get_family
    from bench.families.flux import TINY
    from bench.models.synthetic import fill_random_weights

    def filled(threads: int) -> dict[str, torch.Tensor]:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            module = get_family("flux").meta_components(TINY)["transformer"]
            fill_random_weights(module, 0, "transformer", torch.bfloat16)
        finally:
            torch.set_num_threads(previous)
        return {k: v.clone() for k, v in module.state_dict().items()}

    one, several = filled(1), filled(4)
    assert one.keys() == several.keys() and len(one) > 50
    assert all(torch.equal(one[k], several[k]) for k in one)


# -- the smoke run ------------------------------------------------------------------------------


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GPU_CHECK_ROOT=str(root), GPU_CHECK_PYTHON=sys.executable, PYTHONUNBUFFERED="1")
    return env  # BENCH_CACHE_DIR: the session's cache (tests/conftest.py)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _ok_images(run_dir: Path) -> int:
    if not (run_dir / "records.jsonl").is_file():
        return 0
    return sum(r["kind"] == "image" and r["status"] == "ok" for r in _records(run_dir))


def _group_gone(pgid: int, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The smoke script killed (SIGKILL to its process group) after its first image, run again
    to the end with --pack, then once more on the complete run after its records were rewritten
    as a CUDA run writes them (so that run's score, report and size check read CUDA counters):
    what each invocation left behind."""
    root = tmp_path_factory.mktemp("gpu-check")
    results = root / "results" / "gpu-check-smoke"
    log = (root / "first.log").open("w")
    first = subprocess.Popen(
        [str(SCRIPT), "--smoke"],
        env=_env(root),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    end = time.monotonic() + 900
    try:
        while True:
            runs = [p.parent for p in results.glob("*/manifest.json")]
            if runs and _ok_images(runs[0]) >= 1:
                break
            if first.poll() is not None:
                pytest.fail(f"the first invocation ended before the kill: {first.returncode}")
            if time.monotonic() > end:
                pytest.fail("no image after 900 s")
            time.sleep(0.1)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        log.close()
    run_dir = runs[0]
    killed_at = _records(run_dir)
    assert _group_gone(first.pid), "a process of the killed script is still running"

    second = subprocess.run(
        [str(SCRIPT), "--smoke", "--pack", str(root / "pack")],
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=900,
    )
    finished = (run_dir / "records.jsonl").read_text()
    # the second invocation's report, before the third writes its own over it
    second_report = root / "second-report"
    shutil.copytree(root / "reports" / "gpu-check-smoke" / run_dir.name, second_report)
    cuda = _as_cuda_run(run_dir)
    cuda_records = (run_dir / "records.jsonl").read_text()
    third = subprocess.run(
        [str(SCRIPT), "--smoke"], env=_env(root), capture_output=True, text=True, timeout=900
    )
    return {
        "root": root,
        "results": results,
        "run_dir": run_dir,
        "killed_at": killed_at,
        "second": second,
        "finished": finished,
        "second_report": second_report,
        "cuda": cuda,
        "cuda_records": cuda_records,
        "third": third,
    }


@pytest.mark.slow
def test_the_rerun_resumes_the_killed_run_and_completes_it(smoke: dict[str, Any]) -> None:
    second, run_dir = smoke["second"], smoke["run_dir"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"resuming {run_dir}" in second.stdout
    assert "complete" in second.stdout.splitlines()[-1]
    assert [p for p in smoke["results"].iterdir() if p.is_dir()] == [run_dir]

    manifest = json.loads((run_dir / "manifest.json").read_text())
    killed_ids = {r["cell_id"] for r in smoke["killed_at"] if r["kind"] == "cell"}
    assert len(killed_ids) < len(manifest["cells"]), "the kill came after the last cell"
    records = [json.loads(line) for line in smoke["finished"].splitlines() if line.strip()]
    assert records[: len(smoke["killed_at"])] == smoke["killed_at"], "records were rewritten"

    cells = Counter(r["cell_id"] for r in records if r["kind"] == "cell")
    assert cells == Counter({c["cell_id"]: 1 for c in manifest["cells"]}), "each cell once"
    images = Counter(
        (r["cell_id"], r["prompt_id"], r["repeat"]) for r in records if r["kind"] == "image"
    )
    status = {r["cell_id"]: r["status"] for r in records if r["kind"] == "cell"}
    for cell in manifest["cells"]:
        owed = [(cell["cell_id"], i["prompt_id"], i["repeat"]) for i in manifest["images"]]
        if status[cell["cell_id"]] == "ok":
            assert all(images[key] == 1 for key in owed), cell["cell_id"]  # each image once
        else:
            assert not any(images[key] for key in owed), cell["cell_id"]

    import torch

    for cell_id, state in status.items():
        offloaded = "__none__" not in cell_id
        if offloaded and not torch.cuda.is_available():
            assert state == "failed", cell_id  # diffusers: "requires accelerator"
        else:
            assert state == "ok", cell_id


@pytest.mark.slow
def test_every_stage_ran_and_is_timed(smoke: dict[str, Any]) -> None:
    run_dir, report_dir = smoke["run_dir"], smoke["second_report"]
    summary = json.loads((run_dir / "scores_summary.json").read_text())
    psnr = {row["cell_id"] for row in summary["cells"] if row.get("metric") == "psnr"}
    assert {"Q8_0__none__64x64", "Q4_K__none__64x64"} <= psnr
    for name in ("report.md", "report.html", "table.csv"):
        assert (report_dir / name).is_file(), name
    checks = json.loads((report_dir / "size-check.json").read_text())
    rows = checks["cells"] if isinstance(checks, dict) else checks
    assert len(rows) == len(json.loads((run_dir / "manifest.json").read_text())["cells"])
    assert all(r["weights_match"] for r in rows if r["status"] == "ok")

    lines = [
        line.split("\t") for line in (smoke["results"] / "phases.tsv").read_text().splitlines()
    ]
    header, rows_ = lines[0], lines[1:]
    assert header[:5] == ["invocation", "mode", "phase", "seconds", "exit"]
    by_invocation: dict[str, list[str]] = {}
    for row in rows_:
        by_invocation.setdefault(row[0], []).append(row[2])
        assert float(row[3]) >= 0 and row[4] == "0", row
    first, second, third = by_invocation.values()
    assert first == ["fork-check", "preflight", "build", "quantize"]  # killed during the sweep
    assert second == [
        "fork-check",
        "preflight",
        "build",
        "quantize",
        "run",
        "score",
        "report",
        "size",
        "pack",
    ]
    assert third == ["fork-check", "preflight", "score", "report", "size"]  # nothing built or run


@pytest.mark.slow
def test_a_complete_run_is_only_scored_and_reported_again(smoke: dict[str, Any]) -> None:
    third, run_dir = smoke["third"], smoke["run_dir"]
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert f"{run_dir} is complete" in third.stdout
    assert "resuming" not in third.stdout
    assert (run_dir / "records.jsonl").read_text() == smoke["cuda_records"]


@pytest.mark.slow
def test_the_manifest_says_which_interpreter_and_checkout_ran(smoke: dict[str, Any]) -> None:
    env = json.loads((smoke["run_dir"] / "manifest.json").read_text())["environment"]
    assert env["python_executable"] == sys.executable
    sources = env["package_sources"]
    assert sources["bench"]["path"] == str(REPO / "bench")
    assert sources["diffusers"] == {"version": env["packages"]["diffusers"], "path": ANY}
    assert Path(sources["diffusers"]["path"]).name == "diffusers"
    assert sources["pydantic"]["version"] and sources["huggingface-hub"]["path"]
    assert env["source"]["path"] == str(REPO)
    assert str(REPO) in env["env"]["PYTHONPATH"].split(os.pathsep)


@pytest.mark.slow
def test_the_pack_holds_the_run_without_images(smoke: dict[str, Any]) -> None:
    pack = smoke["root"] / "pack"
    run_id = smoke["run_dir"].name
    with tarfile.open(pack / "gpu-check-run.tgz") as tar:
        names = tar.getnames()
    assert f"results/gpu-check-smoke/{run_id}/records.jsonl" in names
    assert f"results/gpu-check-smoke/{run_id}/scores_summary.json" in names
    assert f"reports/gpu-check-smoke/{run_id}/size-check.json" in names
    assert not [n for n in names if n.endswith(".png") or "/images" in n]
    with tarfile.open(pack / "gpu-check-reference-images.tgz") as tar:
        images = [n for n in tar.getnames() if n.endswith(".png")]
    assert sorted(Path(n).name for n in images) == ["blog-city__r0.png", "blog-city__r1.png"]
    assert all("full-fp32__none__64x64" in n for n in images)


# -- size check and report on CUDA-shaped records ------------------------------------------------


def _as_cuda_run(run_dir: Path) -> dict[str, dict[str, int]]:
    """Rewrites the CPU run's records so that its ok cells carry the counters a CUDA cell
    records (the worker's MemorySampler on cuda): NVML used with its baseline, torch
    reserved/allocated. Returns, per cell, the peaks written (NVML net of the baseline, torch
    reserved)."""
    written: dict[str, dict[str, int]] = {}
    records = _records(run_dir)
    for index, record in enumerate(records):
        if record.get("status") != "ok":
            continue
        cell_id = record["cell_id"]
        base = (3 + index % 2) * GIB  # another process already holds memory on the device
        net = (5 + index) * GIB // 4
        reserved = net - GIB // 2
        if record["kind"] == "cell":
            record["device"] = "cuda:0"
            memory = record["memory"]
            memory["baseline"]["nvml_used_bytes"] = base
            memory["load"].update(
                nvml_used_peak_bytes=base + net // 2,
                torch_max_reserved_bytes=reserved // 2,
                torch_max_allocated_bytes=reserved // 3,
            )
            memory.pop("warmup", None)
            written[cell_id] = {"base": base, "load_nvml": net // 2, "load_reserved": reserved // 2}
        else:
            info = written[cell_id]
            record["memory"] = {
                **(record.get("memory") or {}),
                "nvml_used_peak_bytes": info["base"] + net,
                "torch_max_reserved_bytes": reserved,
                "torch_max_allocated_bytes": reserved - GIB // 8,
            }
            info["nvml"] = max(info.get("nvml", 0), net)
            info["reserved"] = max(info.get("reserved", 0), reserved)
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return written


@pytest.mark.slow
def test_size_check_and_report_read_cuda_counters(smoke: dict[str, Any]) -> None:
    """The third invocation ran on the run rewritten as a CUDA run (the fixture): its
    `bench size --check` and `bench report` phases read the CUDA counters."""
    from bench.sizing.check import check_run

    run, written = smoke["run_dir"], smoke["cuda"]
    assert len(written) >= 3
    checks = {c.cell_id: c for c in check_run(run)}
    for cell_id, peaks in written.items():
        c = checks[cell_id]
        assert c.nvml_measured == max(peaks["nvml"], peaks["load_nvml"])  # net of baseline
        assert c.reserved_measured == max(peaks["reserved"], peaks["load_reserved"])
        total = c.prediction.total_bytes
        assert c.nvml_error == pytest.approx((total - c.nvml_measured) / c.nvml_measured)
        assert c.note is None  # not treated as a CPU cell
    third = smoke["third"]
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert f"over {len(written)} cells" in " ".join(third.stdout.split())
    report = smoke["root"] / "reports" / "gpu-check-smoke" / run.name
    checked = json.loads((report / "size-check.json").read_text())
    rows = {r["cell_id"]: r for r in (checked["cells"] if isinstance(checked, dict) else checked)}
    assert {cell_id: rows[cell_id]["nvml_used_minus_baseline_bytes"] for cell_id in written} == {
        cell_id: checks[cell_id].nvml_measured for cell_id in written
    }
    with (report / "table.csv").open() as handle:
        table = {row["cell_id"]: row for row in csv.DictReader(handle)}
    for cell_id, peaks in written.items():  # the raw table keeps NVML gross, as recorded
        gross = float(table[cell_id]["generate_nvml_used_peak_bytes"])
        assert gross == peaks["base"] + peaks["nvml"]
        # and the headline net of the baseline, as bench size --check reads it
        net = float(table[cell_id]["peak_nvml_used_net_peak_bytes"])
        assert net == max(peaks["nvml"], peaks["load_nvml"])
    md = (report / "report.md").read_text()
    assert "peak VRAM, NVML net of the pre-cell baseline (GiB)" in md
    assert "peak VRAM, NVML device used, gross (GiB)" in md
    assert "CPU run: not VRAM" not in md


def test_gpu_preflight_without_a_gpu_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the GPU preflight would pass")
    steps = REPO / "benchmarks" / "gpu_check_steps.py"
    config = REPO / "configs" / "gpu-check.yaml"
    result = subprocess.run(
        [sys.executable, str(steps), "preflight", str(config), "--mode", "gpu"],
        capture_output=True,
        text=True,
        env={**_env(tmp_path), "BENCH_CACHE_DIR": str(tmp_path / "cache")},
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: no CUDA device visible to torch: the GPU check needs one GPU"
    ]
    assert "python: " + sys.executable in result.stdout  # what would run is printed first
    assert not (tmp_path / "cache").exists()  # nothing built, nothing written


# -- the first check and what the GPU machine is sent -------------------------------------------


def _has_gpu() -> bool:
    probe = "import pynvml; pynvml.nvmlInit(); print(pynvml.nvmlDeviceGetCount())"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    return result.returncode == 0 and int(result.stdout.strip() or 0) > 0


@pytest.mark.slow
def test_the_fork_check_imports_the_servers_modules_and_skips_without_a_gpu(
    smoke: dict[str, Any],
) -> None:
    """Each invocation's fork-check phase (a fresh `gpu_check_steps.py fork-check` process, as
    in GPU mode; its exit status 0 is checked in phases.tsv) imports what the warm server
    imports (bitsandbytes and torchao among them, installed here as by default) and finds CUDA
    uninitialised; with no GPU the fork is skipped with one line saying so (on a GPU the child
    must run a kernel and synchronize)."""
    gpu = _has_gpu()
    for invocation in (smoke["second"], smoke["third"]):
        out = invocation.stdout.splitlines()
        assert "torch.cuda.is_initialized() after the warm server's imports: False" in out
        assert "the server's own verdict: no CUDA state" in out
        if gpu:
            assert any(line.startswith("forked child: cuda ran") for line in out), out
        else:
            (skipped,) = [line for line in out if line.startswith("fork check skipped")]
            assert skipped.startswith("fork check skipped: no GPU on this machine (NVMLError")


def test_the_wheels_carry_the_default_install_at_the_locked_versions() -> None:
    """gpu_wheels.sh pins every `backends` package at the lock's version, and the wheel check
    counts the `backends` extra among the project's requirements."""
    import re

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from gpu_check_wheels import project_requirements
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from packaging.utils import canonicalize_name

    backends = {"torchao", "bitsandbytes", "optimum-quanto"}
    required = {canonicalize_name(r.name) for r in project_requirements()}
    assert backends <= required
    script = (REPO / "benchmarks" / "gpu_wheels.sh").read_text()
    carried = dict(re.findall(r"^\s+([a-z0-9-]+)==(\S+)$", script, re.MULTILINE))
    lock = dict(
        re.findall(r"^([a-z0-9-]+)==(\S+)", (REPO / "requirements" / "lock.txt").read_text(), re.M)
    )
    for name in backends:
        assert carried[name] == lock[name], name


def test_a_slimmed_wheel_installs_with_only_the_builds_kept(tmp_path: Path) -> None:
    """The bitsandbytes wheel is carried with its CPU and CUDA 13 libraries only: the rewritten
    wheel's RECORD matches its files, and pip installs it."""
    import zipfile

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from gpu_check_wheels import slim_bitsandbytes
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    libraries = ["cpu", "cuda118", "cuda128", "cuda130", "cuda132", "rocm64"]
    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    info = "bitsandbytes-0.50.2.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("bitsandbytes/__init__.py", "")
        for name in libraries:
            archive.writestr(f"bitsandbytes/libbitsandbytes_{name}.so", name * 1000)
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: bitsandbytes\nVersion: 0.50.2\n"
        )
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        archive.writestr(f"{info}/RECORD", "")
    slim_bitsandbytes(tmp_path, ["130", "132"])
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read(f"{info}/RECORD").decode().splitlines()
    kept = {f"bitsandbytes/libbitsandbytes_{n}.so" for n in ("cpu", "cuda130", "cuda132")}
    assert {n for n in names if n.endswith(".so")} == kept
    assert {line.split(",")[0] for line in record} == names
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert {p.name for p in (site / "bitsandbytes").glob("*.so")} == {k.split("/")[1] for k in kept}
