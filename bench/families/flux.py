"""FLUX.1 (Black Forest Labs): the first model family, and everything about it that is not generic.

FluxPipeline: a FluxTransformer2DModel (19 double-stream and 38 single-stream blocks at
FLUX.1-dev's size) denoising packed 2×2 latent patches, CLIP-L (pooled) and T5-XXL (sequence)
text encoders, a 16-channel AutoencoderKL and a flow-matching Euler scheduler. This module holds
its synthetic specs and presets, how its components are built, how the pipeline is called and
its output taken, its working-memory formulas for `bench size`, and (through flux_gguf) its
GGUF tensor names and rules.

The presets and the builder are those bench/models/synthetic.py had before families existed, so
the cache folders (names, weights, configs) and the predictions are the same as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bench.families.base import Family, PublishedCount, StepCallback, pictures

if TYPE_CHECKING:
    from PIL.Image import Image

    from bench.gguf.names import TensorNames
    from bench.size.components import Component, PipelineComponents
    from bench.size.predict import Scenario


@dataclass(frozen=True)
class FluxSpec:
    """Every size that shapes a synthetic FLUX pipeline. Its hash names the cache folder."""

    transformer: dict[str, Any]
    clip: dict[str, Any]
    t5: dict[str, Any]
    vae: dict[str, Any]
    scheduler: dict[str, Any] = field(
        default_factory=lambda: {
            "shift": 3.0,
            "use_dynamic_shifting": True,
            "base_shift": 0.5,
            "max_shift": 1.15,
            "base_image_seq_len": 256,
            "max_image_seq_len": 4096,
        }
    )
    dtype: str = "float32"

    def digest(self, seed: int) -> str:
        """The cache folder's hash (bench.models.synthetic.spec_digest)."""
        from bench.models.synthetic import spec_digest

        return spec_digest(self, seed)


# Tiny: widths are multiples of 256 so every quantized FLUX tensor admits the K-quants, and the
# whole default matrix runs on two CPU cores in about a minute.
TINY = FluxSpec(
    transformer={
        "patch_size": 1,
        "in_channels": 16,
        "num_layers": 2,
        "num_single_layers": 4,
        "attention_head_dim": 64,
        "num_attention_heads": 4,
        "joint_attention_dim": 256,
        "pooled_projection_dim": 256,
        "guidance_embeds": True,
        "axes_dims_rope": [16, 24, 24],
    },
    clip={
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": 256,
    },
    t5={
        "d_model": 256,
        "d_kv": 64,
        "d_ff": 512,
        "num_layers": 2,
        "num_heads": 4,
        "feed_forward_proj": "gated-gelu",
    },
    vae={
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "scaling_factor": 1.0,
        "shift_factor": 0.0,
    },
)

# FLUX.1-dev's published architecture: transformer 12B, T5-XXL encoder 4.7B, CLIP-L, its VAE.
FLUX_DEV = FluxSpec(
    transformer={
        "patch_size": 1,
        "in_channels": 64,
        "num_layers": 19,
        "num_single_layers": 38,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 4096,
        "pooled_projection_dim": 768,
        "guidance_embeds": True,
        "axes_dims_rope": [16, 56, 56],
    },
    clip={
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "projection_dim": 768,
        "vocab_size": 49408,
    },
    t5={
        "d_model": 4096,
        "d_kv": 64,
        "d_ff": 10240,
        "num_layers": 24,
        "num_heads": 64,
        "feed_forward_proj": "gated-gelu",
        "vocab_size": 32128,
    },
    vae={
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "latent_channels": 16,
        "norm_num_groups": 32,
        "scaling_factor": 0.3611,
        "shift_factor": 0.1159,
    },
    dtype="bfloat16",
)

PRESETS: dict[str, FluxSpec] = {"tiny": TINY, "flux-dev": FLUX_DEV}

# Special-token ids of the real CLIP-L and T5 tokenizers (openai/clip-vit-large-patch14,
# google/t5-v1_1-xxl): used when a spec is sized without building its local tokenizers.
REAL_CLIP_TOKEN_IDS = {"bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1}
REAL_T5_TOKEN_IDS = {"pad_token_id": 0, "eos_token_id": 1}


def meta_components(
    spec: FluxSpec,
    clip_token_ids: dict[str, int] | None = None,
    t5_token_ids: dict[str, int] | None = None,
    clip_vocab: int | None = None,
    t5_vocab: int | None = None,
) -> dict[str, Any]:
    """The four model components of a spec on the meta device: shapes without memory.

    The builder fills them with random weights; the VRAM predictor only counts their bytes.
    Vocabulary sizes come from the spec when it names them, else from the arguments.
    """
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_cfg = {"vocab_size": clip_vocab, **spec.clip, **(clip_token_ids or REAL_CLIP_TOKEN_IDS)}
    t5_cfg = {"vocab_size": t5_vocab, **spec.t5, **(t5_token_ids or REAL_T5_TOKEN_IDS)}
    if clip_cfg["vocab_size"] is None or t5_cfg["vocab_size"] is None:
        raise ValueError("the spec names no vocabulary sizes: pass clip_vocab and t5_vocab")
    levels = len(spec.vae["block_out_channels"])
    with init_empty_weights():
        components = {
            "transformer": FluxTransformer2DModel(**spec.transformer),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**clip_cfg)),
            "text_encoder_2": T5EncoderModel(T5Config(**t5_cfg)),
            "vae": AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=["DownEncoderBlock2D"] * levels,
                up_block_types=["UpDecoderBlock2D"] * levels,
                use_quant_conv=False,
                use_post_quant_conv=False,
                **spec.vae,
            ),
        }
    components["text_encoder_2"].tie_weights()  # T5 shares its input embedding table
    return components


def _local_tokenizers() -> tuple[Any, Any]:
    from bench.models.tokenizers import build_clip_tokenizer, build_t5_tokenizer

    return build_clip_tokenizer(), build_t5_tokenizer()


def _local_meta_components(spec: FluxSpec, clip_tokenizer: Any, t5_tokenizer: Any) -> dict:
    """Meta components with the local tokenizers' special tokens and (unless the spec names
    them) vocabulary sizes: exactly the models a build fills."""
    return meta_components(
        spec,
        clip_token_ids={
            "bos_token_id": clip_tokenizer.bos_token_id,
            "eos_token_id": clip_tokenizer.eos_token_id,
            "pad_token_id": clip_tokenizer.pad_token_id,
        },
        t5_token_ids={
            "pad_token_id": t5_tokenizer.pad_token_id,
            "eos_token_id": t5_tokenizer.eos_token_id,
        },
        clip_vocab=len(clip_tokenizer),
        t5_vocab=len(t5_tokenizer),
    )


def build_components(spec: FluxSpec, seed: int) -> dict[str, Any]:
    """FluxPipeline's constructor arguments: random-weight models, local tokenizers, scheduler."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from bench.models.synthetic import fill_components

    dtype = getattr(torch, spec.dtype)
    clip_tokenizer, t5_tokenizer = _local_tokenizers()
    modules = _local_meta_components(spec, clip_tokenizer, t5_tokenizer)
    fill_components(modules, seed, dtype)
    return {
        **modules,
        "tokenizer": clip_tokenizer,
        "tokenizer_2": t5_tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(**spec.scheduler),
    }


# ---------------------------------------------------------------------------------------------
# Working memory (docs/size.md)

#: Live (N tokens × hidden) tensors at the peak of a FLUX single-stream block, in units of one
#: such tensor at the compute dtype: the block's input and its residual (2), the normed input
#: (1), the MLP branch held across attention (4), q, k, v (3), and the rotary embedding's
#: float32 temporaries for one of q/k (7 at 16-bit: x.float()·cos, x_rotated.float()·sin,
#: their sum, x_rotated). Float32 compute skips the up-casts: 4 instead of 7. See docs/size.md.
LIVE_UNITS_HALF = 17
LIVE_UNITS_FLOAT32 = 14


def image_tokens(vae: Component, height: int, width: int, patch: int = 2) -> int:
    """FLUX latent tokens: the VAE divides by 2^(levels-1), the transformer packs 2×2 patches."""
    factor = 2 ** (len(vae.config.get("block_out_channels", [0, 0, 0, 0])) - 1) * patch
    return (height // factor) * (width // factor)


def transformer_activations(
    transformer: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """Peak of a single-stream block: LIVE_UNITS tensors of (image + text tokens) × hidden."""
    from bench.size.components import DTYPE_BYTES

    cfg = transformer.config
    hidden = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
    units = LIVE_UNITS_FLOAT32 if dtype == "float32" else LIVE_UNITS_HALF
    nbytes = units * batch * tokens * hidden * DTYPE_BYTES[dtype]
    why = (
        f"{units} live tensors of tokens×hidden = {units}×{batch}×{tokens}×{hidden}×"
        f"{DTYPE_BYTES[dtype]} B at the peak of a single-stream block (SDPA: no score matrix)"
    )
    return nbytes, why


# ---------------------------------------------------------------------------------------------
# The family


class FluxFamily(Family):
    """FLUX.1 [dev] / [schnell]-shaped pipelines (FluxPipeline)."""

    name: ClassVar[str] = "flux"
    title: ClassVar[str] = "FLUX.1"
    pipeline_class: ClassVar[str] = "FluxPipeline"
    denoiser_class: ClassVar[str] = "FluxTransformer2DModel"
    side_multiple: ClassVar[int] = 16  # VAE factor 8 × 2×2 patches
    #: FluxPipeline rounds other sides down to a multiple of vae_scale_factor × 2 (a warning)
    side_why: ClassVar[str] = "VAE downsamples by 8 and its transformer packs 2×2 patches"
    real_preset: ClassVar[str] = "flux-dev"
    real_model: ClassVar[str] = "FLUX.1-dev"
    #: black-forest-labs/FLUX.1-dev's component sizes in bf16 (shared/reference/
    #: published-figures.md: transformer 23.8 GB, T5-XXL encoder 9.52 GB, CLIP-L 246 MB,
    #: VAE 168 MB) at 2 bytes a weight, to the precision they are published with; the model
    #: page's "11.9B params" for the transformer is the same figure
    published_parameters: ClassVar[Mapping[str, PublishedCount]] = {
        "transformer": PublishedCount(11.9e9, 0.05e9, "transformer 23.8 GB in bf16: 11.9 B"),
        "text_encoder_2": PublishedCount(4.76e9, 0.005e9, "T5-XXL encoder 9.52 GB: 4.76 B"),
        "text_encoder": PublishedCount(123e6, 0.5e6, "CLIP-L 246 MB in bf16: 123 M"),
        "vae": PublishedCount(84e6, 0.5e6, "VAE 168 MB in bf16: 84 M"),
    }

    @property
    def presets(self) -> Mapping[str, FluxSpec]:
        return PRESETS

    def cache_stem(self, preset: str) -> str:
        """The bare preset name, as before families existed: existing caches stay valid."""
        return preset

    def side_factors(
        self, vae: Mapping[str, Any], transformer: Mapping[str, Any]
    ) -> tuple[int, int]:
        """FluxPipeline's vae_scale_factor (2 per VAE level after the first) and its packing
        of 2×2 latent patches."""
        return 2 ** (len(vae.get("block_out_channels") or [0, 0, 0, 0]) - 1), 2

    def meta_components(self, spec: FluxSpec) -> dict[str, Any]:
        """Real tokenizers' special-token ids when the spec names its vocabularies (sizing
        FLUX.1-dev), else the local tokenizers' ids and vocabularies (as the tiny build)."""
        if "vocab_size" in spec.clip and "vocab_size" in spec.t5:
            return meta_components(spec)
        return _local_meta_components(spec, *_local_tokenizers())

    def build_components(self, spec: FluxSpec, seed: int) -> dict[str, Any]:
        return build_components(spec, seed)

    def generate(
        self,
        pipe: Any,
        prompt: str,
        *,
        height: int,
        width: int,
        steps: int,
        guidance: float,
        max_sequence_length: int,
        generator: Any,
        callback_on_step_end: StepCallback | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> list[Image]:
        """FluxPipeline's call as its documentation shows it; ``guidance`` is the distilled
        guidance scale (an embedding input of FLUX.1-dev, not classifier-free guidance)."""
        self.check_options(options)
        self.check_generation_size(pipe, height, width)
        result = pipe(
            prompt,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            max_sequence_length=max_sequence_length,
            generator=generator,
            callback_on_step_end=callback_on_step_end,
            output_type="np",
        )
        return pictures(result.images[:1])

    @property
    def gguf(self) -> TensorNames:
        """BFL names, as city96's FLUX.1-dev files (bench/families/flux_gguf.py); imported on
        first use, so looking a family up by name does not import bench.gguf."""
        from bench.families.flux_gguf import FLUX_TENSOR_NAMES

        return FLUX_TENSOR_NAMES

    def activations(
        self,
        component: Component,
        pipe: PipelineComponents,
        scenario: Scenario,
        compute_dtype: str,
    ) -> tuple[str, int, str]:
        """Transformer: image + text tokens through a single-stream block; the VAE: its
        decoder at full resolution; CLIP and T5: their encoders at their sequence lengths."""
        from bench.size.predict import text_encoder_activations, vae_decode_activations

        if component.name == self.denoiser:
            tokens = image_tokens(pipe.components["vae"], scenario.height, scenario.width)
            text = scenario.max_sequence_length
            work, why = transformer_activations(
                component, tokens + text, scenario.batch, compute_dtype
            )
            return "transformer activations", work, f"{tokens} image + {text} text tokens; {why}"
        if "block_out_channels" in component.config:
            work, why = vae_decode_activations(
                component, scenario.height, scenario.width, scenario.batch
            )
            return "VAE decode activations", work, why
        work, why = text_encoder_activations(
            component, scenario.max_sequence_length, scenario.batch, component.dtype
        )
        return f"{component.name} activations", work, why


FLUX = FluxFamily()
