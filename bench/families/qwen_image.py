"""Qwen-Image (Alibaba Qwen team): a 20 B MMDiT with a Qwen2.5-VL text encoder.

QwenImagePipeline: a QwenImageTransformer2DModel (60 dual-stream blocks, width 3072) denoising
packed 2×2 patches of a 16-channel latent, Qwen2.5-VL-7B-Instruct as the text encoder (its last
hidden states over a chat template, the system message's 34 tokens dropped), the causal-3D
AutoencoderKLQwenImage (Wan 2.1's VAE layout) and a flow-matching Euler scheduler. Guidance is
real classifier-free guidance (``true_cfg_scale`` with a negative prompt), not a distilled
embedding. This module holds its specs and presets, its transformer, its pipeline call, its
transformer's working-memory formula, and (through qwen_image_gguf) its GGUF names and rules;
Qwen2.5-VL and the VAE are the shared blocks' (bench/blocks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bench.blocks import text_encoders, vaes
from bench.blocks.denoisers import block_peak
from bench.families.base import Family, PublishedCount
from bench.families.qwen_image_gguf import QWEN_IMAGE_TENSOR_NAMES
from bench.gguf.names import TensorNames
from bench.models.synthetic import spec_digest
from bench.sizing.terms import DenoiserStreams

if TYPE_CHECKING:
    from bench.sizing.components import Component, PipelineComponents
    from bench.sizing.terms import Scenario


@dataclass(frozen=True)
class QwenImageSpec:
    """Every size that shapes a synthetic Qwen-Image pipeline. Its hash names the cache folder."""

    transformer: dict[str, Any]
    text: dict[str, Any]  # Qwen2.5-VL text_config
    vision: dict[str, Any]  # Qwen2.5-VL vision_config (unused by text-to-image, but built)
    vae: dict[str, Any]
    # Qwen/Qwen-Image's scheduler/scheduler_config.json
    scheduler: dict[str, Any] = field(
        default_factory=lambda: {
            "base_image_seq_len": 256,
            "base_shift": 0.5,
            "max_image_seq_len": 8192,
            "max_shift": 0.9,
            "num_train_timesteps": 1000,
            "shift": 1.0,
            "shift_terminal": 0.02,
            "time_shift_type": "exponential",
            "use_dynamic_shifting": True,
        }
    )
    dtype: str = "float32"

    def digest(self, seed: int) -> str:
        """The cache folder's hash (bench.models.synthetic.spec_digest)."""
        return spec_digest(self, seed)


def _transformer(layers: int, head_dim: int, heads: int, text: int, rope: int) -> dict[str, Any]:
    """A QwenImageTransformer2DModel config: ``layers`` dual-stream blocks over 2×2 patches of
    16 latent channels, Qwen2.5-VL's width ``text`` in."""
    return {
        "patch_size": 2,
        "in_channels": 64,
        "out_channels": 16,
        "num_layers": layers,
        "attention_head_dim": head_dim,
        "num_attention_heads": heads,
        "joint_attention_dim": text,
        "axes_dims_rope": [16, rope, rope],
    }


# Tiny: every transformer block width is 256 or 1024 (multiples of 256, so the K-quants apply);
# the whole sweep runs on two CPU cores in a few minutes.
TINY = QwenImageSpec(
    transformer=_transformer(2, 64, 4, 256, 24),
    text=text_encoders.qwen25_vl_text_sizes(256, 512, 2, 4, 2, 2048, [8, 12, 12]),
    vision=text_encoders.qwen25_vl_vision_sizes(1, 64, 128, 2, 256, [0]),
    vae=vaes.wan_vae_sizes(16, [1, 2, 2, 2], 1),
)

# Qwen/Qwen-Image's published architecture (transformer/, text_encoder/ and vae/ config.json).
QWEN_IMAGE = QwenImageSpec(
    transformer=_transformer(60, 128, 24, 3584, 56),
    text={
        "vocab_size": 152064,
        **text_encoders.qwen25_vl_text_sizes(3584, 18944, 28, 28, 4, 128000, [16, 24, 24]),
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
    vision={
        **text_encoders.qwen25_vl_vision_sizes(32, 1280, 3420, 16, 3584, [7, 15, 23, 31]),
        "tokens_per_second": 2,
    },
    vae=vaes.WAN21_VAE,
    dtype="bfloat16",
)

PRESETS: dict[str, QwenImageSpec] = {"tiny": TINY, "qwen-image": QWEN_IMAGE}

# ---------------------------------------------------------------------------------------------
# Working memory (docs/size.md, "Qwen-Image")

#: Live (tokens × hidden) tensors at the peak of a dual-stream block, counted from diffusers'
#: QwenImageTransformerBlock and QwenDoubleStreamAttnProcessor2_0 (not yet fitted to a GPU
#: measurement): the block's input (1), the modulated input (1), q, k, v (3) and their joint
#: concatenation (3), the rotary embedding's float32 temporaries for one of q/k at 16-bit
#: (4: x.float() as complex pairs, its product with the frequencies; float32: 2), the attention
#: output (1). The 4×-wide MLP (up 4 + GELU 4 over its input and the residual, 10) stays below.
LIVE_UNITS_HALF = 13
LIVE_UNITS_FLOAT32 = 11


#: Tokens of the chat template around the prompt: the 34 system tokens the pipeline drops and
#: the 5 after the prompt (<|im_end|>, newline, <|im_start|>, assistant, newline).
TEMPLATE_TOKENS = 39


def transformer_activations(
    transformer: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """Peak of a dual-stream block: LIVE_UNITS tensors of (image + text tokens) × hidden."""
    units = (LIVE_UNITS_HALF, LIVE_UNITS_FLOAT32)
    return block_peak(
        transformer, tokens, batch, dtype, units, "a dual-stream block (SDPA: no score matrix)"
    )


# ---------------------------------------------------------------------------------------------
# The family


class QwenImageFamily(Family):
    """Qwen-Image text-to-image pipelines (QwenImagePipeline)."""

    name: ClassVar[str] = "qwen_image"
    title: ClassVar[str] = "Qwen-Image"
    pipeline_class: ClassVar[str] = "QwenImagePipeline"
    denoiser_class: ClassVar[str] = "QwenImageTransformer2DModel"
    # sides: the base class's 16 (VAE factor 8 × 2×2 patches); QwenImagePipeline rounds other
    # sides down to a multiple of vae_scale_factor × 2
    real_preset: ClassVar[str] = "qwen-image"
    real_model: ClassVar[str] = "Qwen-Image"
    #: Published figures (docs/size.md, "Qwen-Image"): the model card's "20B MMDiT" for the
    #: transformer; Qwen/Qwen2.5-VL-7B-Instruct's model page, "8.29B params", for the text
    #: encoder; ComfyUI's qwen_image_vae.safetensors, 254 MB in bf16, for the VAE
    published_parameters: ClassVar[Mapping[str, PublishedCount]] = {
        "transformer": PublishedCount(20e9, 1e9, "Qwen-Image model card: 20B MMDiT"),
        "text_encoder": PublishedCount(8.29e9, 0.01e9, "Qwen2.5-VL-7B-Instruct: 8.29B params"),
        "vae": PublishedCount(127e6, 1e6, "qwen_image_vae.safetensors 254 MB in bf16: 127 M"),
    }

    #: diffusers' own names, as city96's and QuantStack's files (bench/families/qwen_image_gguf.py)
    gguf: ClassVar[TensorNames] = QWEN_IMAGE_TENSOR_NAMES
    text_encoder_fields: ClassVar[tuple[str, ...]] = ("text",)
    tokenizer_kinds: ClassVar[Mapping[str, str]] = {"tokenizer": "qwen2"}
    #: Qwen-Image's build never re-ties the shared tables: each stays as filled
    fill_options: ClassVar[Mapping[str, bool]] = {"tie": False}
    vae_config_key: ClassVar[str] = "base_dim"

    @property
    def presets(self) -> Mapping[str, QwenImageSpec]:
        return PRESETS

    def side_factors(
        self, vae: Mapping[str, Any], transformer: Mapping[str, Any]
    ) -> tuple[int, int]:
        """QwenImagePipeline's vae_scale_factor (2 per entry of the VAE's temperal_downsample)
        and its 2×2 latent patches."""
        return vaes.spatial_factor(vae), 2

    def blocks(self, spec: QwenImageSpec, tokenizers: Mapping[str, Any]) -> dict[str, Any]:
        """Qwen2.5-VL and the VAE (Wan 2.1's layout)."""
        text_encoder = text_encoders.qwen25_vl(spec.text, spec.vision, tokenizers.get("tokenizer"))
        return {
            "text_encoder": text_encoder,
            "vae": vaes.wan_vae("AutoencoderKLQwenImage", spec.vae),
        }

    def call_arguments(self, guidance: float, options: Mapping[str, Any]) -> dict[str, Any]:
        """QwenImagePipeline's call as its documentation shows it: ``guidance`` is
        ``true_cfg_scale``, classifier-free guidance against the documented negative prompt
        " " (two transformer passes a step); at 1 or below no negative prompt is given and
        the pipeline runs without guidance. ``guidance_scale`` stays None: Qwen-Image is not
        guidance-distilled (the pipeline warns and ignores it otherwise)."""
        return {"negative_prompt": " " if guidance > 1 else None, "true_cfg_scale": guidance}

    block_activations = staticmethod(transformer_activations)

    def denoiser_streams(self, pipe: PipelineComponents, scenario: Scenario) -> DenoiserStreams:
        """Dual-stream blocks return the image and the text tokens; true CFG (guidance > 1)
        runs the unconditional call under its own cache context: two passes."""
        side = vaes.spatial_factor(pipe.components["vae"].config) * 2
        tokens = (scenario.height // side) * (scenario.width // side)
        return DenoiserStreams(tokens, scenario.max_sequence_length, scenario.batch, passes=2)

    def vae_activations(self, vae: Component, scenario: Scenario) -> tuple[int, str]:
        """One frame decoded at full resolution."""
        return vaes.wan_vae_frame_decode_activations(
            vae, scenario.height, scenario.width, scenario.batch
        )

    def text_encoder_activations(self, encoder: Component, scenario: Scenario) -> tuple[int, str]:
        """Qwen2.5-VL over the template's 34 system tokens plus the prompt at
        max_sequence_length, and the 5 template tokens after it."""
        tokens = scenario.max_sequence_length + TEMPLATE_TOKENS
        return text_encoders.qwen25_vl_activations(encoder, tokens, scenario.batch, encoder.dtype)


QWEN_IMAGE_FAMILY = QwenImageFamily()
