"""GGUF transformers, as the seed blog ran them: diffusers' single-file loader.

The transformer comes from `<TransformerClass>.from_single_file(file, quantization_config=
GGUFQuantizationConfig(compute_dtype=...), config=base, subfolder="transformer")` and is handed
to `DiffusionPipeline.from_pretrained(base, transformer=...)`, so the rest of the pipeline
loads as usual. The file is the user's (a local path or a hub URL) or, for a synthetic base,
made once by the harness's own ggml-exact quantizer (bench.gguf) and cached beside the base.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from bench.backends.base import Backend, Prepared
from bench.config_base import RECORDED
from bench.config_fields import Dtype, Text, VariantConfig
from bench.errors import ConfigError
from bench.families import family_of_folder
from bench.families.gguf import inspect_gguf, quantize_checkpoint
from bench.families.sizing import DEFAULT_GGUF_TYPES, gguf_variant
from bench.gguf.errors import GGUFFileError
from bench.gguf.header import read_header
from bench.gguf.qtypes import declared_type_mismatch, supported_quant_types
from bench.yamlfile import local_path

# GGUF types a variant may name. Which of them can be *made* here depends on the quantizer
# (bench.gguf); which can be *loaded* depends on diffusers. Both are checked later, per cell.
GGUF_TYPES = (
    "F16",
    "BF16",
    "Q8_0",
    "Q6_K",
    "Q5_K",
    "Q5_K_S",
    "Q5_K_M",
    "Q4_K",
    "Q4_K_S",
    "Q4_K_M",
    "Q5_0",
    "Q5_1",
    "Q4_0",
    "Q4_1",
    "Q3_K",
    "Q3_K_S",
    "Q2_K",
)


#: The URLs a GGUF `file` may be: a file of a Hugging Face Hub repository, the only remote
#: source diffusers' single-file loader reads (``blob/<revision>/`` or ``resolve/<revision>/``;
#: without either, the main branch).
HUB_URL_FORM = "https://huggingface.co/<owner>/<repo>/blob/<revision>/<file>.gguf"
_HUB_URL = re.compile(
    r"^https://(?:huggingface\.co|hf\.co)/(?P<repo>[\w.-]+/[\w.-]+)/"
    r"(?:(?:blob|resolve)/(?P<revision>[^/\s]+)/)?(?P<path>[^\s]+\.gguf)$"
)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class HubFile:
    """A GGUF file of a Hub repository, as its URL names it."""

    repo_id: str
    filename: str
    revision: str


def hub_file(url: str) -> HubFile | None:
    """The repository, path and revision a Hub URL names; None for anything else."""
    match = _HUB_URL.match(url)
    if match is None:
        return None
    return HubFile(match["repo"], match["path"], match["revision"] or "main")


def _file_form(value: str) -> str:
    """A GGUF `file` is a local path or a Hub file URL: any other URL is refused here, naming
    it, instead of reaching diffusers, which takes anything with a scheme for a Hub id and fails
    inside a cell with a message about huggingface.co that never names the URL."""
    scheme = _SCHEME.match(value)
    if scheme is None:
        return value
    if scheme["scheme"].lower() not in ("http", "https"):
        raise ValueError(
            f"unsupported scheme {scheme['scheme']!r}: expected a local path or a Hugging Face "
            f"Hub URL, {HUB_URL_FORM}"
        )
    if hub_file(value) is None and _HUB_URL.match(value + ".gguf"):
        raise ValueError(f"expected the URL of a .gguf file, {HUB_URL_FORM}")
    if hub_file(value) is None:
        raise ValueError(
            f"not a Hugging Face Hub file URL: diffusers loads single files from a local path "
            f"or {HUB_URL_FORM}"
        )
    return value


class GGUFVariant(VariantConfig):
    """A GGUF-quantized transformer; the rest of the pipeline stays at `dtype`.

    `file` is a local path or a Hub URL (`https://huggingface.co/<repo>/blob/<rev>/<file>`);
    when omitted the harness makes the file from the base model with its own quantizer. A file
    must hold `quant`'s weights: its tensor types are compared with it before any cell.
    """

    kind: Literal["gguf"]
    quant: str
    file: Text | None = None
    compute_dtype: Dtype = "bfloat16"
    dtype: Dtype | None = Field(
        default=None, description="dtype of the non-transformer components; default compute_dtype"
    )

    @field_validator("quant")
    @classmethod
    def _known_quant(cls, value: str) -> str:
        if value not in GGUF_TYPES:
            raise ValueError(f"expected one of {', '.join(GGUF_TYPES)}, got {value!r}")
        return value

    @field_validator("file")
    @classmethod
    def _loadable_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or (info.context or {}).get(RECORDED):
            return value
        return _file_form(value)

    @property
    def pipeline_dtype(self) -> str:
        return self.dtype or self.compute_dtype


def is_url(value: str) -> bool:
    return _SCHEME.match(value) is not None


class GGUFQuantMismatch(ValueError):
    """A GGUF file whose tensors are not of the variant's declared quant (a cell failure when
    only the cell could read the file: a Hub file not yet downloaded)."""


def check_declared_quant(variant: GGUFVariant, path: Path) -> str | None:
    """Why the GGUF file at `path` is not a `variant.quant` file (naming both), else None;
    GGUFFileError when it is not a readable GGUF file. Reads the header only (bounded)."""
    from collections import Counter

    weights: Counter[str] = Counter()
    for tensor in read_header(path).tensors:
        weights[tensor.ggml_type] += tensor.n_elements
    return declared_type_mismatch(variant.quant, dict(weights))


class GGUFBackend(Backend):
    kind: ClassVar[str] = "gguf"
    config_model = GGUFVariant
    packages: ClassVar[tuple[str, ...]] = ("gguf",)
    summary: ClassVar[str] = (
        "GGUF single files: <Transformer>.from_single_file(file, "
        "quantization_config=GGUFQuantizationConfig(compute_dtype))"
    )

    def scheme(self, variant: GGUFVariant) -> str:
        return variant.quant

    def label(self, variant: GGUFVariant) -> str:
        return f"GGUF {variant.quant}"

    def bits_per_weight(self, variant: GGUFVariant) -> float | None:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        base = variant.quant.removesuffix("_S").removesuffix("_M")
        try:
            block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[base]]
        except KeyError:
            return None
        return nbytes * 8 / block

    def quantized_components(self, variant: GGUFVariant) -> tuple[str, ...]:
        return ("transformer",)

    def check_model_source(self, variant: GGUFVariant, source: str) -> None:
        if variant.file is None and source != "synthetic":
            raise ValueError(
                f"variants.{variant.name}.file: a GGUF file path or URL is required when "
                "model.source is 'pretrained' (quantize it first with `bench quantize`)"
            )

    def check_local_files(self, variant: GGUFVariant, config_dir: Path) -> None:
        """A local `file` (or a Hub file already in the download cache) is a readable GGUF file
        of the declared `quant` (its header's tensor types), checked before anything is
        prepared or written."""
        if variant.file is None:
            return
        if is_url(variant.file):
            _check_cached_hub_file(variant)
            return
        where = f"variants.{variant.name}.file"
        path = local_path(variant.file, config_dir)
        if path.is_dir():
            raise ConfigError(f"{where}: {variant.file!r} is a folder, not a GGUF file")
        if not path.is_file():
            raise ConfigError(f"{where}: {variant.file!r} not found")
        try:
            mismatch = check_declared_quant(variant, path)
        except GGUFFileError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if mismatch:
            raise ConfigError(
                f"variants.{variant.name}.quant: {variant.quant}, but {variant.file!r}: {mismatch}"
            )

    def prepare_message(self, variant: GGUFVariant) -> str | None:
        if variant.file is None:
            return f"quantizing the transformer to {variant.quant}"
        return None

    def prepare(self, variant: GGUFVariant, base: str, config_dir: Path) -> Prepared:
        """A variant without a file is made from the base; the config validator admits that
        only for synthetic bases, whose folder is local."""
        if variant.file is not None:
            if is_url(variant.file):
                return Prepared(artifacts={"gguf_file": variant.file})
            path = local_path(variant.file, config_dir).resolve()
            try:
                return Prepared(artifacts={"gguf_file": str(path)}, file_info=describe_gguf(path))
            except GGUFFileError as exc:
                raise ConfigError(f"variants.{variant.name}.file: {exc}") from exc
        if variant.quant not in supported_quant_types():
            return Prepared(
                unavailable={
                    "type": "QuantTypeUnavailable",
                    "message": f"the harness cannot make {variant.quant} files "
                    f"(it makes {', '.join(supported_quant_types())})",
                    "phase": "prepare",
                }
            )
        path = make_gguf_from_base(Path(base), variant.quant)
        return Prepared(artifacts={"gguf_file": str(path)}, file_info=describe_gguf(path))

    def load_pipeline(
        self, base: str, variant: GGUFVariant, artifacts: dict[str, str], revision: str | None
    ) -> Any:
        from bench.models.loading import from_pretrained  # deferred: loads torch

        gguf_file = artifacts.get("gguf_file")
        if gguf_file is None:
            raise ValueError(f"variant {variant.name}: no GGUF file resolved")
        transformer = load_gguf_transformer(base, variant, gguf_file, revision)
        return from_pretrained(base, variant.pipeline_dtype, revision, transformer=transformer)

    def size_variant(self, base: Any, spec: dict[str, Any], cell: dict[str, Any] | None) -> Any:
        compute = spec.get("compute_dtype") or ("bfloat16" if cell is not None else base.dtype)
        file = None
        if cell is not None:
            info = cell.get("transformer_file") or {}
            path = Path(info["path"]) if info.get("path") else None
            file = path if path is not None and path.is_file() else None
        return gguf_variant(
            base,
            quant=None if file else spec.get("quant"),
            file=file,
            compute_dtype=compute,
            dtype=spec.get("dtype") or compute,
            name=cell["variant"] if cell is not None else spec.get("name"),
        )

    def size_presets(self) -> list[dict[str, Any]]:
        return [{"kind": "gguf", "quant": q} for q in DEFAULT_GGUF_TYPES]


def _check_cached_hub_file(variant: GGUFVariant) -> None:
    """A Hub file already downloaded here is checked against the declared quant before any
    cell (ConfigError); one not yet here is checked by the cell that downloads it."""
    from huggingface_hub import try_to_load_from_cache

    assert variant.file is not None
    hub = hub_file(variant.file)
    if hub is None:
        return
    cached = try_to_load_from_cache(hub.repo_id, hub.filename, revision=hub.revision)
    if not isinstance(cached, str):
        return
    try:
        mismatch = check_declared_quant(variant, Path(cached))
    except GGUFFileError as exc:
        raise ConfigError(f"variants.{variant.name}.file: {variant.file}: {exc}") from exc
    if mismatch:
        raise ConfigError(
            f"variants.{variant.name}.quant: {variant.quant}, but {variant.file}: {mismatch}"
        )


def local_gguf_file(variant: GGUFVariant, gguf_file: str) -> str:
    """The local path of a variant's file: a Hub URL downloaded (or found in the cache) the way
    diffusers would, with the revision the URL names (diffusers' own URL parsing keeps only
    ``blob/main``), and checked against the declared quant (GGUFQuantMismatch naming both)."""
    hub = hub_file(gguf_file) if is_url(gguf_file) else None
    if hub is None:
        return gguf_file
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(hub.repo_id, hub.filename, revision=hub.revision)
    mismatch = check_declared_quant(variant, Path(path))
    if mismatch:
        raise GGUFQuantMismatch(f"{gguf_file}: {mismatch}")
    return path


def load_gguf_transformer(
    base: str, variant: GGUFVariant, gguf_file: str, revision: str | None = None
) -> Any:
    from diffusers import GGUFQuantizationConfig

    from bench.models.loading import torch_dtype, transformer_class  # deferred: loads torch

    cls = transformer_class(base, revision)
    return cls.from_single_file(
        local_gguf_file(variant, gguf_file),
        quantization_config=GGUFQuantizationConfig(
            compute_dtype=torch_dtype(variant.compute_dtype)
        ),
        config=base,
        subfolder="transformer",
        torch_dtype=torch_dtype(variant.compute_dtype),
    )


def _quick_digest(path: Path) -> str:
    """sha256 of the size and first 64 MiB: identifies a multi-GB file in well under a second."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(64 << 20))
    return digest.hexdigest()[:16]


def describe_gguf(path: Path) -> dict[str, Any]:
    """What the manifest records of a GGUF file: size, quick digest, types, bits per weight."""
    info = inspect_gguf(path)
    return {
        "path": str(path),
        "bytes": info.file_bytes,
        "sha256_quick": _quick_digest(path),
        "tensor_types": dict(info.tensors_per_type),
        "bytes_per_type": dict(info.bytes_per_type),
        "parameters": info.parameters,
        "bits_per_weight": info.bits_per_weight,
        "key_names": info.key_names,
        "architecture": info.metadata.get("general.architecture"),
    }


def make_gguf_from_base(base_dir: Path, quant: str) -> Path:
    """Quantize the base's transformer once and cache the file beside the base pipeline."""
    out = base_dir / "gguf" / f"transformer-{quant}.gguf"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        family = family_of_folder(base_dir)
        quantize_checkpoint(
            base_dir / family.denoiser, out, quant, key_names="auto", family=family.name
        )
    return out
