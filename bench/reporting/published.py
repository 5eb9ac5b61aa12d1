"""Published figures (each table names its source) and when they may be
shown beside measured ones.

A published number is only comparable with a cell run with the same model (each table says
which: every table here measured the real FLUX.1-dev weights), resolution and step count;
anywhere else the report says the table exists and what differs, naming the run's own model
(another family's run is another model), rather than putting unlike numbers side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.reporting.data import RunData
from bench.reporting.model import run_model


@dataclass(frozen=True)
class PublishedRow:
    variant: str  # the row's words in the published table ("full", "Q8_0", "bitsandbytes NF4")
    offload: str  # none | model | sequential
    memory: str  # as published, with its unit
    seconds: str  # time per image as published
    quality: str = ""
    #: what a cell's variant_spec must hold to be this row (the keys the row fixes)
    spec: tuple[tuple[str, Any], ...] = ()
    #: the pipeline components the row quantized (None: the backend's own, the transformer)
    components: tuple[str, ...] | None = None
    after_load: str = ""  # memory after loading, as published (empty: not published)
    #: what a cell's speedup_spec must hold (dotted keys: "cache.threshold"); None: a cell
    #: without a speed-up, so a speed-up cell never stands for a row measured without one
    speedup: tuple[tuple[str, Any], ...] | None = None
    compile_s: str = ""  # compile latency as published (empty: not published)

    def describes(self, cell: dict[str, Any]) -> bool:
        """Whether a manifest cell has this row's variant settings, offload mode and speed-up."""
        spec = cell.get("variant_spec") or {}
        if cell.get("offload") != self.offload:
            return False
        if any(spec.get(key) != value for key, value in self.spec):
            return False
        if not self._has_speedup(cell.get("speedup_spec")):
            return False
        if self.components is not None:
            return tuple(sorted(spec.get("components") or ())) == tuple(sorted(self.components))
        return True

    def _has_speedup(self, recorded: dict[str, Any] | None) -> bool:
        if self.speedup is None or not recorded:
            return self.speedup is None and not recorded
        return all(_at(recorded, key) == value for key, value in self.speedup)


def _at(spec: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a recorded spec ("cache.threshold"), None where absent."""
    value: Any = spec
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _full(offload: str, memory: str, seconds: str, **kw: Any) -> PublishedRow:
    return PublishedRow("full", offload, memory, seconds, spec=(("kind", "full"),), **kw)


def _gguf(quant: str, offload: str, memory: str, seconds: str, **kw: Any) -> PublishedRow:
    spec = (("kind", "gguf"), ("quant", quant))
    return PublishedRow(quant, offload, memory, seconds, spec=spec, **kw)


# The HF blog quantized the transformer and T5 for its bitsandbytes, torchao and quanto rows,
# as did the diffusers documentation's bitsandbytes 4-bit rows.
_WITH_T5 = ("text_encoder_2", "transformer")
_NF4 = (("kind", "bitsandbytes"), ("scheme", "nf4"))
_BNB8 = (("kind", "bitsandbytes"), ("scheme", "int8"))
_AO8 = (("kind", "torchao"), ("scheme", "int8wo"))
_QUANTO8 = (("kind", "quanto"), ("scheme", "int8"))


def _with_t5(
    variant: str,
    offload: str,
    memory: str,
    seconds: str,
    spec: tuple[tuple[str, Any], ...],
    **kw: Any,
) -> PublishedRow:
    """A row of a backend that quantized the transformer and T5 (text_encoder_2)."""
    return PublishedRow(variant, offload, memory, seconds, spec=spec, components=_WITH_T5, **kw)


@dataclass(frozen=True)
class PublishedTable:
    key: str
    source: str
    #: the model the published figures were measured with: its family (registry key) and the
    #: words that name it, matched in a pretrained run's path
    family: str
    model: str
    hardware: str
    height: int
    width: int
    steps: int
    memory_label: str
    rows: tuple[PublishedRow, ...] = field(default_factory=tuple)


GGUF_BLOG = PublishedTable(
    key="gguf-blog",
    source='the blog post "GGUF Q8 with diffusers"',
    family="flux",
    model="FLUX.1-dev",
    hardware="a GPU with less than 24 GB (16 GB class)",
    height=496,
    # The post asked for 496×680; FluxPipeline rounds sides down to multiples of 16, so its
    # images (and so its figures) are 496×672, the size configs/flux-dev-gguf.yaml asks for.
    width=672,
    steps=60,
    memory_label="VRAM (blog's words)",
    rows=(
        _full("none", '"24 GB?" (not run)', "–"),
        _full("sequential", "~3 GB", "~329 s", quality="excellent"),
        _gguf("Q8_0", "model", "~14-15 GB", "~98 s", quality="excellent"),
        _gguf("Q6_K", "model", "~10-12 GB", "~116 s", quality="very good"),
        _gguf("Q4_K", "model", "~8 GB (claimed)", "–"),
    ),
)

HF_BACKENDS_BLOG = PublishedTable(
    key="hf-backends",
    source='Hugging Face blog "Exploring Quantization Backends in Diffusers" (May 2025)',
    family="flux",
    model="FLUX.1-dev",
    hardware="1× H100 80GB",
    height=1024,
    width=1024,
    steps=50,
    memory_label="peak torch reserved",
    rows=(
        _full("none", "36.166 GB", "12 s", after_load="31.447 GB"),
        _full("model", "23.271 GB", "20 s", after_load="0.000 GB"),
        _gguf("Q8_0", "none", "25.973 GB", "15 s", after_load="21.502 GB"),
        _gguf("Q8_0", "model", "12.965 GB", "22 s", after_load="0.000 GB"),
        _gguf("Q4_1", "none", "21.326 GB", "23 s", after_load="16.838 GB"),
        _gguf("Q4_1", "model", "9.164 GB", "28 s", after_load="0.000 GB"),
        _gguf("Q2_K", "none", "17.752 GB", "26 s", after_load="13.264 GB"),
        _gguf("Q2_K", "model", "9.164 GB", "31 s", after_load="0.000 GB"),
        _with_t5("bitsandbytes NF4", "none", "17.281 GB", "12 s", _NF4, after_load="12.584 GB"),
        _with_t5("bitsandbytes 8-bit", "none", "24.432 GB", "27 s", _BNB8, after_load="19.273 GB"),
        _with_t5(
            "torchao int8 weight-only", "none", "21.482 GB", "15 s", _AO8, after_load="17.020 GB"
        ),
        _with_t5(
            "torchao int8 weight-only", "model", "12.189 GB", "26 s", _AO8, after_load="0.000 GB"
        ),
        _with_t5("quanto INT8", "none", "21.814 GB", "15 s", _QUANTO8, after_load="17.330 GB"),
        PublishedRow(
            "FP8 layerwise casting",
            "none",
            "28.451 GB",
            "13 s",
            spec=(("kind", "layerwise"), ("storage_dtype", "float8_e4m3fn")),
            after_load="23.682 GB",
        ),
    ),
)

# Speed-ups of FLUX.1-dev (configs/speedups-flux-dev.yaml runs each row's settings).
_BF16 = (("kind", "full"), ("dtype", "bfloat16"))
_COMPILE_WHOLE = (("kind", "compile"), ("scope", "whole"))


def _first_block(threshold: float, seconds: str) -> PublishedRow:
    speedup = (("kind", "cache"), ("cache.method", "first_block"), ("cache.threshold", threshold))
    return PublishedRow(
        f"bf16, First Block Cache {threshold:g}", "none", "–", seconds, spec=_BF16, speedup=speedup
    )


DIFFUSERS_SPEED_MEMORY = PublishedTable(
    key="diffusers-speed-memory",
    source='diffusers documentation "Compiling and offloading quantized models" '
    "(https://huggingface.co/docs/diffusers/optimization/speed-memory-optims)",
    family="flux",
    model="FLUX.1-dev",
    hardware="RTX 4090",
    # The page states neither size nor steps: FluxPipeline's defaults (1024x1024, 28 steps).
    height=1024,
    width=1024,
    steps=28,
    memory_label="memory-usage",
    rows=(
        _with_t5("bitsandbytes 4-bit", "none", "14.9453 GB", "32.602 s", _NF4),
        _with_t5(
            "bitsandbytes 4-bit, torch.compile",
            "none",
            "14.9448 GB",
            "25.847 s",
            _NF4,
            speedup=_COMPILE_WHOLE,
        ),
        _with_t5(
            "bitsandbytes 4-bit, torch.compile",
            "model",
            "12.2369 GB",
            "32.312 s",
            _NF4,
            speedup=_COMPILE_WHOLE,
        ),
    ),
)

FIRST_BLOCK_CACHE_PR = PublishedTable(
    key="first-block-cache-pr",
    source='diffusers pull request #11180 "First Block Cache" '
    "(https://github.com/huggingface/diffusers/pull/11180), its Flux column",
    family="flux",
    model="FLUX.1-dev",
    hardware="a GPU the table does not name",
    # The PR's table gives thresholds and seconds only: FluxPipeline's defaults assumed.
    height=1024,
    width=1024,
    steps=28,
    memory_label="memory (not published)",
    rows=(
        PublishedRow("bf16", "none", "–", "16.47 s", spec=_BF16),
        _first_block(0.05, "12.63 s"),
        _first_block(0.10, "9.27 s"),
        _first_block(0.20, "5.91 s"),
    ),
)

TORCH_COMPILE_DEVLOG = PublishedTable(
    key="torch-compile-devlog",
    source='PyTorch devlog "torch.compile and Diffusers: A Hands-On Guide to Peak Performance" '
    "(https://docs.pytorch.org/devlogs/inductor/2026-05-11-torch-compile-and-diffusers/)",
    family="flux",
    model="FLUX.1-dev",
    hardware="1× H100",
    height=1024,  # FluxPipeline's default; the post gives 28 steps and max_sequence_length 512
    width=1024,
    steps=28,
    memory_label="memory (not published)",
    rows=(
        PublishedRow("bf16", "none", "–", "6.7 s", spec=_BF16),
        PublishedRow(
            "bf16, compile (whole, fullgraph)",
            "none",
            "–",
            "4.5 s",
            spec=_BF16,
            speedup=(*_COMPILE_WHOLE, ("fullgraph", True)),
            compile_s="67.4 s",
        ),
        PublishedRow(
            "bf16, compile_repeated_blocks (fullgraph)",
            "none",
            "–",
            '– ("keeping the speedup")',
            spec=_BF16,
            speedup=(("kind", "compile"), ("scope", "repeated_blocks"), ("fullgraph", True)),
            compile_s="9.6 s",
        ),
    ),
)

TABLES = (GGUF_BLOG, HF_BACKENDS_BLOG)
#: Shown for a run with speed-ups only: a run without any has nothing to put beside them.
SPEEDUP_TABLES = (DIFFUSERS_SPEED_MEMORY, FIRST_BLOCK_CACHE_PR, TORCH_COMPILE_DEVLOG)


def is_published_model(run: RunData, table: PublishedTable) -> bool:
    """The table's own weights: same family, not synthetic, and the path names its model."""
    model = run_model(run.manifest)
    if model.family != table.family or model.synthetic:
        return False
    base = run.manifest.get("base_model") or {}
    names = " ".join(str(base.get(k) or "") for k in ("path", "resolved_path", "preset"))
    return table.model.lower() in names.lower()


def model_difference(run: RunData, table: PublishedTable) -> str | None:
    """Why this run's model is not the table's, in words (None: it is the table's model)."""
    if is_published_model(run, table):
        return None
    model = run_model(run.manifest)
    if model.family != table.family:
        if model.synthetic:
            named = model.real_model if model.is_real_architecture else model.title
            what = f"{named} with random weights (synthetic preset {model.preset!r})"
        else:
            what = f"{model.title} ({model.path!r})"
        return (
            f"model {what}, not {table.model}: the published figures are another model's "
            f"({table.model}'s architecture and weights), whatever the settings"
        )
    if model.synthetic:
        return f"random weights (synthetic preset {model.preset!r}), not {table.model}"
    return f"model {model.path!r}, not {table.model}"


def steps_of(run: RunData) -> int | None:
    steps = (run.manifest.get("config") or {}).get("steps")
    return int(steps) if steps is not None else None


def differences(run: RunData, table: PublishedTable) -> list[str]:
    """What keeps this run's cells from being compared with `table` (empty: comparable)."""
    out = []
    model = model_difference(run, table)
    if model is not None:
        out.append(model)
    resolutions = {(c["height"], c["width"]) for c in run.manifest["cells"]}
    if (table.height, table.width) not in resolutions:
        shown = ", ".join(f"{h}×{w}" for h, w in sorted(resolutions))
        out.append(f"resolution {shown} (published: {table.height}×{table.width})")
    if steps_of(run) != table.steps:
        out.append(f"{steps_of(run)} steps (published: {table.steps})")
    if not run.on_gpu:
        out.append(f"no GPU (published: {table.hardware})")
    return out


def comparable(run: RunData, table: PublishedTable) -> bool:
    """Same model (the table's real weights), a cell at the published resolution, same step
    count."""
    resolutions = {(c["height"], c["width"]) for c in run.manifest["cells"]}
    return (
        is_published_model(run, table)
        and (table.height, table.width) in resolutions
        and steps_of(run) == table.steps
    )


def matches(run: RunData, table: PublishedTable) -> list[tuple[dict, PublishedRow]]:
    """(manifest cell, published row) pairs with the same settings, variant and offload mode."""
    if not comparable(run, table):
        return []
    pairs = []
    for cell in run.manifest["cells"]:
        if (cell["height"], cell["width"]) != (table.height, table.width):
            continue
        pairs += [(cell, row) for row in table.rows if row.describes(cell)]
    return pairs
