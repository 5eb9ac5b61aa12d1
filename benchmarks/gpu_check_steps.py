"""The steps of benchmarks/gpu_check.sh that need Python: check, clean, build, quantize, find.

Each step is a subcommand so the shell script can time it as one phase; all of them call the
harness's own library code (the builder, the variant preparation the runner uses, the run
folder reader), so what is built and quantized here is exactly what `bench run` then finds in
its cache and reuses.

    python benchmarks/gpu_check_steps.py fork-check
    python benchmarks/gpu_check_steps.py preflight CONFIG --mode gpu|smoke
    python benchmarks/gpu_check_steps.py build CONFIG
    python benchmarks/gpu_check_steps.py quantize CONFIG
    python benchmarks/gpu_check_steps.py find-run CONFIG RESULTS_ROOT
    python benchmarks/gpu_check_steps.py missing RUN_DIR
    python benchmarks/gpu_check_steps.py cleanup CONFIG

Exit status 2 with one line on stderr for anything the user must fix (no GPU, no disk space, a
missing package).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# Packages the check imports before anything is built: a missing one fails in a second, not
# after the build.
REQUIRED_MODULES = (
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "gguf",
    "safetensors",
    "pydantic",
    "yaml",
    "typer",
    "rich",
    "pandas",
    "scipy",
    "matplotlib",
    "torchmetrics",
    "pynvml",
    "psutil",
    "PIL",
    "tokenizers",
    "bench.cli",
)
# Upper bits per weight of the GGUF types the check makes (the few tensors kept in 16/32 bits
# included), for the disk estimate only; the files themselves are measured afterwards.
_BITS_PER_WEIGHT = {"Q8_0": 8.6, "Q6_K": 6.7, "Q5_K": 5.6, "Q4_K": 4.7}
_DISK_MARGIN_BYTES = 2 << 30


class StepError(Exception):
    """Something the user must fix; printed as one line, exit status 2."""


def _load(config_path: Path) -> tuple[Any, Path]:
    from bench.config import load_config

    return load_config(config_path)


def _say(message: str) -> None:
    print(message, flush=True)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


# -- the first check: can a cell forked from the warm server use the GPU? ----------------------


def _gpu_count_without_cuda() -> tuple[int, str]:
    """GPUs NVML sees, asked without touching CUDA (which would spoil the fork below)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount()), ""
    except Exception as exc:  # no NVML library: no NVIDIA driver on this machine
        return 0, f"{type(exc).__name__}: {exc}"


def _child_synchronizes() -> int:
    """In the forked child: one kernel and a synchronize, as a cell's first CUDA work."""
    try:
        import torch

        total = torch.ones(1024, device="cuda").sum()
        torch.cuda.synchronize()
        _say(f"forked child: cuda ran (sum {float(total.item()):.0f}), synchronized")
        return 0
    except Exception as exc:
        _say(f"forked child: FAILED: {type(exc).__name__}: {' '.join(str(exc).split())}")
        return 1


def fork_check() -> None:
    """This process imports exactly what the warm cell server imports (bench.runner.preload),
    then says whether CUDA is initialised (it must not be) and, with a GPU, forks one child
    that runs a kernel and synchronizes: what every forked cell does first. Exit 1 if either
    fails; without a GPU the fork is skipped with a line saying so."""
    started = time.monotonic()
    import torch

    from bench.runner import preload  # runs the server's warm-up here

    initialised = torch.cuda.is_initialized()
    _say(f"torch.cuda.is_initialized() after the warm server's imports: {initialised}")
    _say(f"the server's own verdict: {preload.CUDA_IN_SERVER or 'no CUDA state'}")
    _say(f"imports: {time.monotonic() - started:.1f} s")
    count, why = _gpu_count_without_cuda()
    if count == 0:
        _say(f"fork check skipped: no GPU on this machine ({why or 'NVML counts 0 devices'})")
        failed = 0
    else:
        pid = os.fork()
        if pid == 0:
            os._exit(_child_synchronizes())
        _, status = os.waitpid(pid, 0)
        failed = int(os.waitstatus_to_exitcode(status) != 0)
    _say(f"fork check: {time.monotonic() - started:.1f} s")
    if initialised or preload.CUDA_IN_SERVER or failed:
        sys.exit(1)


# -- preflight ---------------------------------------------------------------------------------


def _import_all() -> None:
    import importlib

    missing = []
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    if missing:
        raise StepError(
            f"{sys.executable} cannot import: {'; '.join(missing)} "
            "(GPU mode: run benchmarks/gpu_wheels.sh where pip works and carry .whl)"
        )


def _spec_bytes(preset: str) -> tuple[int, int]:
    """bf16/fp32 bytes of the whole synthetic pipeline and parameters of its transformer."""
    from bench.families import get_family
    from bench.families.flux import PRESETS

    spec = PRESETS[preset]
    if "vocab_size" not in spec.clip:  # tiny: sized from its tokenizers; a few MB anyway
        return 0, 0
    modules = get_family("flux").meta_components(spec)
    total = sum(t.numel() * t.element_size() for m in modules.values() for t in m.parameters())
    transformer = sum(t.numel() for t in modules["transformer"].parameters())
    # meta tensors are float32 unless cast; the builder writes the spec's dtype
    scale = 2 if spec.dtype in ("bfloat16", "float16") else 4
    return total // 4 * scale, transformer


def _stale_builds(config: Any) -> list[Path]:
    """Cache folders of the same preset and seed built by another builder version or spec."""
    from bench.families.synthetic import synthetic_dir

    current = synthetic_dir(config.model.preset, config.model.seed)
    if not current.parent.is_dir():
        return []
    prefix = f"{config.model.preset}-seed{config.model.seed}-"
    return sorted(p for p in current.parent.iterdir() if p.name.startswith(prefix) and p != current)


def _clean_partials(config: Any) -> None:
    """Leftovers of a killed build or conversion: never complete, never reused, often big."""
    from bench.families.synthetic import synthetic_dir

    current = synthetic_dir(config.model.preset, config.model.seed)
    if current.parent.is_dir():
        for staging in current.parent.glob(f".{current.name}-*"):
            _say(f"removing an interrupted build: {staging}")
            shutil.rmtree(staging, ignore_errors=True)
    gguf_dir = current / "gguf"
    if gguf_dir.is_dir():
        for partial in gguf_dir.glob(".*.partial"):
            _say(f"removing an interrupted conversion: {partial}")
            partial.unlink(missing_ok=True)


def _check_disk(config: Any, mode: str) -> None:
    from bench.backends.gguf import GGUFVariant
    from bench.families.synthetic import synthetic_dir
    from bench.models.synthetic import cache_root

    if config.model.source != "synthetic":
        return
    base = synthetic_dir(config.model.preset, config.model.seed)
    pipeline_bytes, transformer_params = _spec_bytes(config.model.preset)
    need = 0 if (base / "model_index.json").is_file() else pipeline_bytes
    for variant in config.variants:
        if not isinstance(variant, GGUFVariant) or variant.file is not None:
            continue
        if not (base / "gguf" / f"transformer-{variant.quant}.gguf").is_file():
            need += int(transformer_params * _BITS_PER_WEIGHT.get(variant.quant, 16) / 8)
    if need == 0:
        return
    root = cache_root()
    probe = root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free >= need + _DISK_MARGIN_BYTES:
        _say(f"disk: {_gb(free)} free at {probe}, about {_gb(need)} to write")
        return
    stale = _stale_builds(config)
    stale_bytes = sum(f.stat().st_size for p in stale for f in p.rglob("*") if f.is_file())
    if mode == "gpu" and free + stale_bytes >= need + _DISK_MARGIN_BYTES:
        for folder in stale:
            _say(f"removing a stale build of another builder version or spec: {folder}")
            shutil.rmtree(folder)
        return
    raise StepError(
        f"{root}: about {_gb(need + _DISK_MARGIN_BYTES)} needed for the pipeline and its GGUF "
        f"files, {_gb(free)} free (set BENCH_CACHE_DIR to a larger disk)"
    )


def _disk_write_rate(folder: Path, size: int = 512 << 20) -> float:
    """GB/s of one synced write of `size` bytes into `folder`: the build writes tens of GB
    there, so a slow disk shows up here, before it costs minutes."""
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(8 << 20)
    path = folder / f".gpu-check-disk-probe-{os.getpid()}"
    started = time.perf_counter()
    try:
        with path.open("wb") as handle:
            for _ in range(size // len(block)):
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
        return size / (time.perf_counter() - started) / 1e9
    finally:
        path.unlink(missing_ok=True)


def preflight(config_path: Path, mode: str) -> None:
    config, _ = _load(config_path)
    _import_all()
    import torch

    from bench.environment import collect_environment

    env = collect_environment()
    _say(f"python: {env['python_executable']} ({env['python']})")
    for name, source in env["package_sources"].items():
        _say(f"  {name:<18} {source['version'] or '-':<14} {source['path'] or '-'}")
    source = env["source"]
    _say(f"source: {source['path']} at {source['git_commit'] or 'unknown commit'}")
    _say(
        f"cpu: {env['cpu']['logical_cores']} logical cores, torch threads {torch.get_num_threads()}"
    )
    if mode == "gpu":
        if not torch.cuda.is_available():
            raise StepError("no CUDA device visible to torch: the GPU check needs one GPU")
        for gpu in env["gpus"]:
            _say(
                f"gpu {gpu['index']}: {gpu['name']}, {gpu['total_memory_bytes'] / 2**30:.1f} GiB, "
                f"driver {gpu['driver']}, torch CUDA {env['cuda']['torch_cuda']}"
            )
    memory = env["host_memory_bytes"]
    _say(f"host memory: {memory / 2**30:.1f} GiB")
    _clean_partials(config)
    _check_disk(config, mode)
    if mode == "gpu":
        from bench.models.synthetic import cache_root

        rate = _disk_write_rate(cache_root())
        _say(f"disk: {rate:.2f} GB/s synced write at {cache_root()} (512 MiB probe)")


# -- build, quantize ---------------------------------------------------------------------------


def build(config_path: Path) -> None:
    from bench.library_output import quiet_library_environment
    from bench.models.variants import resolve_base

    quiet_library_environment()
    config, _ = _load(config_path)
    started = time.perf_counter()
    base = Path(resolve_base(config))
    size = sum(f.stat().st_size for f in base.rglob("*.safetensors"))
    _say(f"base pipeline: {base} ({_gb(size)}) in {time.perf_counter() - started:.1f} s")


def quantize(config_path: Path) -> None:
    """Make every GGUF file the sweep needs, as the runner would, one phase line per file."""
    from bench.backends.gguf import GGUFVariant
    from bench.library_output import quiet_library_environment
    from bench.models.variants import prepare_variant, resolve_base

    quiet_library_environment()
    config, config_dir = _load(config_path)
    base = resolve_base(config)
    for variant in config.variants:
        if not isinstance(variant, GGUFVariant):
            continue
        started = time.perf_counter()
        prepared = prepare_variant(variant, base, config_dir)
        took = time.perf_counter() - started
        if prepared.unavailable:
            _say(f"{variant.name}: unavailable ({prepared.unavailable['message']})")
            continue
        info = prepared.file_info or {}
        _say(
            f"phase-part quantize-{variant.quant}: {took:.1f} s "
            f"({_gb(info.get('bytes', 0))}, {info.get('bits_per_weight', 0):.2f} bits/weight)"
        )


# -- the run folder ----------------------------------------------------------------------------


def find_run(config_path: Path, results_root: Path) -> None:
    """Print the run folder of this config under `results_root`, if one was started.

    A run is this config's when its manifest's config hash is the config's; folders without a
    manifest were created by a run killed before it wrote one and hold nothing.
    """
    from bench.config import config_hash
    from bench.results import MANIFEST

    config, _ = _load(config_path)
    wanted = config_hash(config)
    if not results_root.is_dir():
        return
    found = []
    for folder in sorted(results_root.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        manifest = folder / MANIFEST
        if not manifest.is_file():
            if not any(folder.iterdir()):
                folder.rmdir()
            continue
        if json.loads(manifest.read_text()).get("config_hash") == wanted:
            found.append(folder)
    if found:
        print(found[-1])


def missing(run_dir: Path) -> None:
    """Print how many cells the run has still to run or finish (0: complete)."""
    from bench.results import missing_work, read_manifest, read_records

    print(len(missing_work(read_manifest(run_dir), read_records(run_dir))))


def cleanup(config_path: Path) -> None:
    """Delete the built pipeline and its GGUF files (tens of GB for flux-dev)."""
    from bench.families.synthetic import synthetic_dir

    config, _ = _load(config_path)
    if config.model.source != "synthetic":
        return
    folder = synthetic_dir(config.model.preset, config.model.seed)
    if folder.is_dir():
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder)
        _say(f"removed {folder} ({_gb(size)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("fork-check")
    p = sub.add_parser("preflight")
    p.add_argument("config", type=Path)
    p.add_argument("--mode", choices=("gpu", "smoke"), required=True)
    for name in ("build", "quantize", "cleanup"):
        sub.add_parser(name).add_argument("config", type=Path)
    p = sub.add_parser("find-run")
    p.add_argument("config", type=Path)
    p.add_argument("results_root", type=Path)
    sub.add_parser("missing").add_argument("run_dir", type=Path)
    args = parser.parse_args()

    from bench.errors import UserInputError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if args.step == "fork-check":
            fork_check()
        elif args.step == "preflight":
            preflight(args.config, args.mode)
        elif args.step == "build":
            build(args.config)
        elif args.step == "quantize":
            quantize(args.config)
        elif args.step == "find-run":
            find_run(args.config, args.results_root)
        elif args.step == "missing":
            missing(args.run_dir)
        else:
            cleanup(args.config)
    except (StepError, UserInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
