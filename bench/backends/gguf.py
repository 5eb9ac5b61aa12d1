"""GGUF transformers, as the seed blog ran them: diffusers' single-file loader.

The transformer comes from `<TransformerClass>.from_single_file(file, quantization_config=
GGUFQuantizationConfig(compute_dtype=...), config=base, subfolder="transformer")` and is handed
to `DiffusionPipeline.from_pretrained(base, transformer=...)`, so the rest of the pipeline
loads as usual. The file is the user's (a local path or a hub URL) or, for a synthetic base,
made once by the harness's own ggml-exact quantizer (bench.gguf) and cached beside the base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from bench.backends.base import Backend, Prepared
from bench.config_fields import Dtype, Text, VariantConfig

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


class GGUFVariant(VariantConfig):
    """A GGUF-quantized transformer; the rest of the pipeline stays at `dtype`.

    `file` is a local path or a hub URL (`https://huggingface.co/<repo>/blob/<rev>/<file>`);
    when omitted the harness makes the file from the base model with its own quantizer.
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

    @property
    def pipeline_dtype(self) -> str:
        return self.dtype or self.compute_dtype


def is_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))


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

    def check_in_config(self, variant: GGUFVariant, config: Any) -> None:
        if variant.file is None and config.model.source != "synthetic":
            raise ValueError(
                f"variants.{variant.name}.file: a GGUF file path or URL is required when "
                "model.source is 'pretrained' (quantize it first with `bench quantize`)"
            )

    def check_local_files(self, variant: GGUFVariant, config_dir: Path) -> None:
        from bench.errors import ConfigError
        from bench.models.variants import local_path

        local = variant.file is not None and not is_url(variant.file)
        if local and not local_path(variant.file, config_dir).is_file():
            raise ConfigError(f"variants.{variant.name}.file: {variant.file!r} not found")

    def prepare_message(self, variant: GGUFVariant) -> str | None:
        if variant.file is None:
            return f"quantizing the transformer to {variant.quant}"
        return None

    def prepare(self, variant: GGUFVariant, base: str, config_dir: Path) -> Prepared:
        """A variant without a file is made from the base; the config validator admits that
        only for synthetic bases, whose folder is local."""
        from bench.errors import ConfigError
        from bench.models.variants import describe_gguf, local_path, make_gguf_from_base

        if variant.file is not None:
            if is_url(variant.file):
                return Prepared(artifacts={"gguf_file": variant.file})
            path = local_path(variant.file, config_dir).resolve()
            from bench.gguf.errors import GGUFFileError

            try:
                return Prepared(artifacts={"gguf_file": str(path)}, file_info=describe_gguf(path))
            except GGUFFileError as exc:
                raise ConfigError(f"variants.{variant.name}.file: {exc}") from exc
        from bench.gguf import supported_quant_types

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
        from bench.models.loading import from_pretrained

        gguf_file = artifacts.get("gguf_file")
        if gguf_file is None:
            raise ValueError(f"variant {variant.name}: no GGUF file resolved")
        transformer = load_gguf_transformer(base, variant, gguf_file, revision)
        return from_pretrained(base, variant.pipeline_dtype, revision, transformer=transformer)

    def size_variant(self, base: Any, spec: dict[str, Any], cell: dict[str, Any] | None) -> Any:
        from bench.size.sources import gguf_variant

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
        from bench.size.sources import DEFAULT_GGUF_TYPES

        return [{"kind": "gguf", "quant": q} for q in DEFAULT_GGUF_TYPES]


def load_gguf_transformer(
    base: str, variant: GGUFVariant, gguf_file: str, revision: str | None = None
) -> Any:
    from diffusers import GGUFQuantizationConfig

    from bench.models.loading import torch_dtype, transformer_class

    cls = transformer_class(base, revision)
    return cls.from_single_file(
        gguf_file,
        quantization_config=GGUFQuantizationConfig(
            compute_dtype=torch_dtype(variant.compute_dtype)
        ),
        config=base,
        subfolder="transformer",
        torch_dtype=torch_dtype(variant.compute_dtype),
    )
