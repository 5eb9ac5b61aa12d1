"""Offline pipelines with random weights, built deterministically and cached on disk.

No weights can be downloaded, so the harness makes its own pipelines: the same classes, the same
saved folder layout and the same loading path as the real models, at a tiny scale (for CPUs and
tests) or at the real architecture's sizes (for measuring memory and speed on a GPU without the
real weights). What to build is the model family's (bench/families: its specs, presets and
components), passed here as an argument; this module is the generic part: where builds are
cached, the seeded fill, the saved layout and the digest that names a build. Weights are filled
tensor by tensor from a generator seeded by (seed, tensor name), so a build is reproducible
across machines and independent of module creation order. A family named by its registry name
(a config's ``model.family``) is looked up by bench/families/synthetic.py, which calls these.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bench.library_output import quiet_library_output

if TYPE_CHECKING:
    import torch

BUILDER_VERSION = 2


class SyntheticFamily(Protocol):
    """What the builder asks of a model family (bench.families.base.Family implements it)."""

    def preset(self, name: str) -> Any:
        """The spec (a frozen dataclass) of a preset name."""
        ...

    def cache_stem(self, preset: str) -> str:
        """First part of the preset's cache folder name."""
        ...

    def build_pipeline(self, spec: Any, seed: int) -> Any:
        """The pipeline of a spec with its seeded random weights, ready to save."""
        ...


def spec_digest(spec: Any, seed: int) -> str:
    """Hash of a spec (a dataclass), the seed and the builder version: names the cache folder,
    so any change to what shapes a build makes a new folder instead of reusing a stale one."""
    blob = json.dumps(
        {"spec": asdict(spec), "seed": seed, "builder": BUILDER_VERSION}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_root() -> Path:
    """Where built pipelines and GGUF files live; BENCH_CACHE_DIR overrides."""
    env = os.environ.get("BENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bench-harness"


def cache_folder(family: SyntheticFamily, preset: str, seed: int) -> Path:
    """The cache folder of a family's preset and seed: ``<stem>-seed<seed>-<spec digest>``."""
    spec = family.preset(preset)
    name = f"{family.cache_stem(preset)}-seed{seed}-{spec_digest(spec, seed)}"
    return cache_root() / "synthetic" / name


def _seeded_generator(seed: int, name: str) -> torch.Generator:
    import torch  # torch: heavy, loaded only to build

    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def fill_random_weights(
    module: torch.nn.Module, seed: int, prefix: str, dtype: torch.dtype
) -> None:
    """Deterministic initialisation that keeps activations in range through deep stacks.

    Matrices get N(0, 1/fan_in) (unit-variance outputs), embedding tables N(0, 0.02²), norm
    scales 1, biases small values. Each tensor depends only on (seed, its name). Parameters may
    be on the meta device (a full-size model is never initialised twice).
    """
    import torch  # torch: heavy, loaded only to build
    from accelerate.utils import set_module_tensor_to_device  # accelerate: likewise

    with torch.no_grad():
        _fill(module, seed, prefix, dtype, set_module_tensor_to_device)


def fill_components(
    modules: dict[str, Any],
    seed: int,
    dtype: torch.dtype,
    *,
    tie: bool = True,
    cast_buffers: bool = False,
) -> dict[str, Any]:
    """Every model component of a family's meta build filled (`fill_random_weights`, each
    named by its pipeline key), shared tables tied again (T5 and UMT5 share their input
    embedding; ``tie=False`` leaves each table as filled, as Qwen-Image's build always has), in
    eval mode; ``cast_buffers``: floating buffers to ``dtype`` too (SD3's
    position table is a buffer diffusers saves with the weights). Returns ``modules``."""
    for prefix, module in modules.items():
        fill_random_weights(module, seed, prefix, dtype)
        if tie and hasattr(module, "tie_weights"):
            module.tie_weights()
        if cast_buffers:
            for buffer in module.buffers():
                if buffer.is_floating_point():
                    buffer.data = buffer.data.to(dtype)
        module.eval()
    return modules


def _fill(module: Any, seed: int, prefix: str, dtype: Any, setter: Any) -> None:
    """Tensors are made on several threads: torch's CPU randn runs on one core per call, so a
    full-size build one tensor at a time takes minutes. Each tensor has its own generator, so
    the values are the same whatever the thread count or completion order."""
    from concurrent.futures import ThreadPoolExecutor

    import torch  # torch: heavy, loaded only to build

    def make(item: tuple[str, Any]) -> Any:
        name, tensor = item
        gen = _seeded_generator(seed, f"{prefix}.{name}")
        # Scaled in place (the same values as out of place): one float32 copy less to allocate.
        if tensor.ndim >= 2:
            if "embed" in name and tensor.ndim == 2 and "linear" not in name:
                values = torch.randn(tensor.shape, generator=gen).mul_(0.02)
            else:
                values = torch.randn(tensor.shape, generator=gen).div_(tensor[0].numel() ** 0.5)
        elif name.endswith("bias"):
            values = torch.randn(tensor.shape, generator=gen).mul_(0.01)
        else:  # norm scales and other vectors
            values = torch.ones(tensor.shape)
        return values.to(dtype)

    params = list(module.named_parameters())
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        for (name, _), values in zip(params, pool.map(make, params), strict=True):
            setter(module, name, "cpu", value=values)


def build_folder(family: SyntheticFamily, preset: str, seed: int, out_dir: Path) -> Path:
    """Build a family's preset and save it in `out_dir` as an ordinary diffusers folder, with a
    ``synthetic.json`` saying what it is."""
    spec = family.preset(preset)
    quiet_library_output()
    pipe = family.build_pipeline(spec, seed)
    pipe.save_pretrained(out_dir, safe_serialization=True, max_shard_size="10GB")
    (out_dir / "synthetic.json").write_text(
        json.dumps(
            {
                "preset": preset,
                "seed": seed,
                "builder_version": BUILDER_VERSION,
                "spec": asdict(spec),
                "note": "random weights: images show quantization error, not image quality",
            },
            indent=2,
        )
    )
    return out_dir


def ensure_folder(family: SyntheticFamily, preset: str, seed: int) -> Path:
    """The cached pipeline folder of a family's preset, built first if absent (atomically: a
    crash leaves none)."""
    target = cache_folder(family, preset, seed)
    if (target / "model_index.json").is_file() and (target / "synthetic.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build_folder(family, preset, seed, staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model_index.json").is_file():  # not a concurrent builder's win
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
