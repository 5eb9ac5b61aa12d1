"""Are two runs comparable at all? Every manifest difference that would make a verdict meaningless.

A time ratio between an H100 and an A10, or between 512 px and 1024 px, is not a regression; a
PSNR change between two prompt sets is not a quality change. Those differences *block* the
comparison (exit 2 unless `--force`). Library versions are what a comparison is for, so they
are listed but never block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from packaging.utils import canonicalize_name

from bench.config import BenchConfig

# Keys of the config that say nothing about the measurement: those bench.config.config_hash
# leaves out (names, and the order the cells run in).
CONFIG_IGNORED = ("name", "description", "cell_order")


@dataclass(frozen=True)
class Difference:
    field: str
    base: Any
    cand: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Nested dicts and lists as `a.b[0].c` paths, so a difference names exactly what changed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out or {prefix: []}
    return {prefix: value}


def _diff(prefix: str, base: Any, cand: Any) -> list[Difference]:
    flat_base, flat_cand = _flatten(base, prefix), _flatten(cand, prefix)
    return [
        Difference(key, flat_base.get(key), flat_cand.get(key))
        for key in sorted(set(flat_base) | set(flat_cand))
        if flat_base.get(key) != flat_cand.get(key)
    ]


def cell_gpu_models(manifest: dict[str, Any]) -> list[str]:
    """The GPU models that ran a run's cells, where its executor recorded them (a Ray run's
    cells run on the cluster's GPUs, not the driver's: bench.runner.ray_executor)."""
    models: set[str] = set()
    for entry in manifest.get("executors") or []:
        if isinstance(entry, dict):
            models.update(m for m in entry.get("gpu_models") or [] if isinstance(m, str))
    return sorted(models)


def _hardware(environment: dict[str, Any], cell_gpus: list[str] | None = None) -> dict[str, Any]:
    """GPU names in index order (the models that ran the cells, where recorded); on a machine
    without GPUs, the CPU model and core count."""
    if cell_gpus:
        return {"gpus": cell_gpus}
    gpus = environment.get("gpus") or []
    if gpus:
        return {"gpus": [gpu.get("name") for gpu in gpus]}
    cpu = environment.get("cpu") or {}
    return {
        "gpus": [],
        "cpu": {"model": cpu.get("model"), "logical_cores": cpu.get("logical_cores")},
    }


def _config_defaults() -> dict[str, Any]:
    """The current config schema's default of every top-level key that has one, as JSON."""

    out: dict[str, Any] = {}
    for name, info in BenchConfig.model_fields.items():
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
            out[name] = (
                default.model_dump(mode="json") if hasattr(default, "model_dump") else default
            )
    return out


def _settings(config: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """A recorded config without the ignored keys; a top-level key that only the other run
    recorded is filled with the schema's default, so a run made before a key existed
    compares equal to one that recorded the default."""
    defaults = _config_defaults()
    out = {k: v for k, v in config.items() if k not in CONFIG_IGNORED}
    for key in other:
        if key not in config and key not in CONFIG_IGNORED and key in defaults:
            out[key] = defaults[key]
    return out


def blocking_differences(base: dict[str, Any], cand: dict[str, Any]) -> list[Difference]:
    """Differences of hardware, prompts, images (seeds), settings and config hash."""
    out: list[Difference] = []
    if base.get("config_hash") != cand.get("config_hash"):
        out.append(Difference("config_hash", base.get("config_hash"), cand.get("config_hash")))
    raw_base, raw_cand = base.get("config") or {}, cand.get("config") or {}
    out += _diff("config", _settings(raw_base, raw_cand), _settings(raw_cand, raw_base))
    prompts_base = {p["id"]: p.get("text") for p in base.get("prompts") or []}
    prompts_cand = {p["id"]: p.get("text") for p in cand.get("prompts") or []}
    out += _diff("prompts", prompts_base, prompts_cand)
    images_base = {f"{i['prompt_id']}__r{i['repeat']}": i.get("seed") for i in base["images"]}
    images_cand = {f"{i['prompt_id']}__r{i['repeat']}": i.get("seed") for i in cand["images"]}
    out += _diff("images", images_base, images_cand)
    gpus_base, gpus_cand = cell_gpu_models(base), cell_gpu_models(cand)
    out += _diff(
        "environment",
        _hardware(base.get("environment") or {}, gpus_base),
        _hardware(cand.get("environment") or {}, gpus_cand),
    )
    if len(gpus_base) > 1 or len(gpus_cand) > 1:
        # A cell's time or peak is then paired with another GPU model's, whatever the other run.
        out.append(Difference("cells of one run ran on different GPU models", gpus_base, gpus_cand))
    return out


def version_changes(base: dict[str, Any], cand: dict[str, Any]) -> list[Difference]:
    """Package, Python and driver versions that differ: what the comparison is about."""
    env_base, env_cand = base.get("environment") or {}, cand.get("environment") or {}
    packages_base, packages_cand = env_base.get("packages") or {}, env_cand.get("packages") or {}
    out = _diff("packages", packages_base, packages_cand)
    # Every other installed distribution, where both manifests list them (runs written since
    # the lock): a `bench matrix` resolution moves huggingface-hub or tokenizers too.
    if "distributions" in env_base and "distributions" in env_cand:
        named = {canonicalize_name(name) for name in {*packages_base, *packages_cand}}
        out += _diff(
            "distributions",
            {k: v for k, v in env_base["distributions"].items() if k not in named},
            {k: v for k, v in env_cand["distributions"].items() if k not in named},
        )
    out += _diff("python", env_base.get("python"), env_cand.get("python"))
    out += _diff(
        "cuda",
        (env_base.get("cuda") or {}).get("torch_cuda"),
        (env_cand.get("cuda") or {}).get("torch_cuda"),
    )
    drivers_base = [g.get("driver") for g in env_base.get("gpus") or []]
    drivers_cand = [g.get("driver") for g in env_cand.get("gpus") or []]
    out += _diff("driver", drivers_base, drivers_cand)
    return out
