"""Qwen-Image (Alibaba Qwen team): a 20 B MMDiT with a Qwen2.5-VL text encoder.

QwenImagePipeline: a QwenImageTransformer2DModel (60 dual-stream blocks, width 3072) denoising
packed 2×2 patches of a 16-channel latent, Qwen2.5-VL-7B-Instruct as the text encoder (its last
hidden states over a chat template, the system message's 34 tokens dropped), the causal-3D
AutoencoderKLQwenImage (Wan 2.1's VAE layout) and a flow-matching Euler scheduler. Guidance is
real classifier-free guidance (``true_cfg_scale`` with a negative prompt), not a distilled
embedding. This module holds its specs and presets, how its components are built, its pipeline
call, its working-memory formulas, and (through qwen_image_gguf) its GGUF names and rules.
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
        from bench.models.synthetic import spec_digest

        return spec_digest(self, seed)


# Tiny: every transformer block width is 256 or 1024 (multiples of 256, so the K-quants apply);
# the whole sweep runs on two CPU cores in a few minutes.
TINY = QwenImageSpec(
    transformer={
        "patch_size": 2,
        "in_channels": 64,
        "out_channels": 16,
        "num_layers": 2,
        "attention_head_dim": 64,
        "num_attention_heads": 4,
        "joint_attention_dim": 256,
        "axes_dims_rope": [16, 24, 24],
    },
    text={
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
    },
    vision={
        "depth": 1,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "out_hidden_size": 256,
        "fullatt_block_indexes": [0],
    },
    vae={
        "base_dim": 16,
        "z_dim": 16,
        "dim_mult": [1, 2, 2, 2],
        "num_res_blocks": 1,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
    },
)

# Qwen/Qwen-Image's published architecture (transformer/, text_encoder/ and vae/ config.json).
QWEN_IMAGE = QwenImageSpec(
    transformer={
        "patch_size": 2,
        "in_channels": 64,
        "out_channels": 16,
        "num_layers": 60,
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": 3584,
        "axes_dims_rope": [16, 56, 56],
    },
    text={
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128000,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
    vision={
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
    },
    vae={
        "base_dim": 96,
        "z_dim": 16,
        "dim_mult": [1, 2, 4, 4],
        "num_res_blocks": 2,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
    },
    dtype="bfloat16",
)

PRESETS: dict[str, QwenImageSpec] = {"tiny": TINY, "qwen-image": QWEN_IMAGE}

#: Qwen2.5-VL's special-token ids (Qwen/Qwen2.5-VL-7B-Instruct's config.json)
REAL_TOKEN_IDS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}


def _local_tokenizer() -> Any:
    from bench.families.qwen_image_tokenizer import build_qwen2_tokenizer

    return build_qwen2_tokenizer()


def _token_ids(tokenizer: Any) -> dict[str, Any]:
    """The text and vision special ids and vocabulary of a (local) tokenizer."""
    ids = tokenizer.convert_tokens_to_ids
    return {
        "text": {
            "vocab_size": len(tokenizer),
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
        },
        "top": {
            "image_token_id": ids("<|image_pad|>"),
            "video_token_id": ids("<|video_pad|>"),
            "vision_start_token_id": ids("<|vision_start|>"),
            "vision_end_token_id": ids("<|vision_end|>"),
        },
    }


def meta_components(spec: QwenImageSpec, tokenizer: Any | None = None) -> dict[str, Any]:
    """The three model components on the meta device. Without a tokenizer the spec must name
    its vocabulary (the real preset: Qwen2.5-VL's ids)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if tokenizer is None:
        if "vocab_size" not in spec.text:
            raise ValueError("the spec names no vocabulary size: pass the local tokenizer")
        text, top = dict(spec.text), dict(REAL_TOKEN_IDS)
    else:
        local = _token_ids(tokenizer)
        text, top = {**spec.text, **local["text"]}, local["top"]
    config = Qwen2_5_VLConfig(
        text_config=text, vision_config=dict(spec.vision), tie_word_embeddings=False, **top
    )
    with init_empty_weights():
        return {
            "transformer": QwenImageTransformer2DModel(**spec.transformer),
            "text_encoder": Qwen2_5_VLForConditionalGeneration(config),
            "vae": AutoencoderKLQwenImage(**spec.vae),
        }


def build_components(spec: QwenImageSpec, seed: int) -> dict[str, Any]:
    """QwenImagePipeline's constructor arguments: random-weight models, the local tokenizer,
    the scheduler."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from bench.models.synthetic import fill_components

    dtype = getattr(torch, spec.dtype)
    tokenizer = _local_tokenizer()
    modules = meta_components(spec, tokenizer)
    fill_components(modules, seed, dtype, tie=False)
    return {
        **modules,
        "tokenizer": tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(**spec.scheduler),
    }


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


def image_tokens(vae: Component, height: int, width: int, patch: int = 2) -> int:
    """Latent tokens: the VAE divides by 2^(temporal downsample stages), then 2×2 patches."""
    factor = 2 ** len(vae.config.get("temperal_downsample", [False, True, True])) * patch
    return (height // factor) * (width // factor)


def transformer_activations(
    transformer: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """Peak of a dual-stream block: LIVE_UNITS tensors of (image + text tokens) × hidden."""
    from bench.size.components import DTYPE_BYTES

    cfg = transformer.config
    hidden = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
    units = LIVE_UNITS_FLOAT32 if dtype == "float32" else LIVE_UNITS_HALF
    nbytes = units * batch * tokens * hidden * DTYPE_BYTES[dtype]
    why = (
        f"{units} live tensors of tokens×hidden = {units}×{batch}×{tokens}×{hidden}×"
        f"{DTYPE_BYTES[dtype]} B at the peak of a dual-stream block (SDPA: no score matrix)"
    )
    return nbytes, why


def text_encoder_activations(
    encoder: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """Qwen2.5-VL's decoder over the templated prompt: the pipeline asks for every layer's
    hidden states (layers + 1 of them stay alive), the gated MLP holds gate, up and their
    product (3 × intermediate), and the LM head computes logits over the whole vocabulary."""
    from bench.size.components import DTYPE_BYTES

    text = encoder.config.get("text_config", encoder.config)
    hidden, inter = int(text["hidden_size"]), int(text["intermediate_size"])
    layers, vocab = int(text["num_hidden_layers"]), int(text["vocab_size"])
    b = DTYPE_BYTES[dtype]
    per_token = (layers + 1) * hidden + 3 * inter + vocab
    why = (
        f"Qwen2.5-VL at {tokens} tokens: ({layers}+1 hidden states × {hidden} + 3 × {inter} "
        f"MLP + {vocab} logits) × {b} B per token"
    )
    return batch * tokens * per_token * b, why


def vae_decode_activations(vae: Component, height: int, width: int, batch: int) -> tuple[int, str]:
    """Causal-3D decoder of one frame: at each resolution its residual blocks hold about four
    activations of the stage's channels (input, norm, SiLU, the causal conv's padded copy)."""
    from bench.size.components import DTYPE_BYTES

    cfg = vae.config
    base, mult = int(cfg["base_dim"]), list(cfg["dim_mult"])
    levels = len(cfg["temperal_downsample"])
    b = DTYPE_BYTES[vae.dtype]
    candidates = []
    for i, m in enumerate(reversed(mult)):  # lowest resolution first
        pixels = (height >> (levels - min(i, levels))) * (width >> (levels - min(i, levels)))
        candidates.append((4 * base * m * pixels, f"stage {i} ({base * m} ch)"))
    elements, where = max(candidates)
    why = f"{where} at {height}×{width}: 4 × {elements // 4:,} values × {b} B × batch {batch}"
    return elements * b * batch, why


# ---------------------------------------------------------------------------------------------
# The family


class QwenImageFamily(Family):
    """Qwen-Image text-to-image pipelines (QwenImagePipeline)."""

    name: ClassVar[str] = "qwen_image"
    title: ClassVar[str] = "Qwen-Image"
    pipeline_class: ClassVar[str] = "QwenImagePipeline"
    denoiser_class: ClassVar[str] = "QwenImageTransformer2DModel"
    side_multiple: ClassVar[int] = 16  # VAE factor 8 × 2×2 patches
    #: QwenImagePipeline rounds other sides down to a multiple of vae_scale_factor × 2
    side_why: ClassVar[str] = "VAE downsamples by 8 and its transformer packs 2×2 patches"
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

    @property
    def presets(self) -> Mapping[str, QwenImageSpec]:
        return PRESETS

    def side_factors(
        self, vae: Mapping[str, Any], transformer: Mapping[str, Any]
    ) -> tuple[int, int]:
        """QwenImagePipeline's vae_scale_factor (2 per entry of the VAE's temperal_downsample)
        and its 2×2 latent patches."""
        return 2 ** len(vae.get("temperal_downsample") or [False, True, True]), 2

    def meta_components(self, spec: QwenImageSpec) -> dict[str, Any]:
        """Qwen2.5-VL's ids when the spec names its vocabulary (sizing the real model), else
        the local tokenizer's (as the tiny build)."""
        if "vocab_size" in spec.text:
            return meta_components(spec)
        return meta_components(spec, _local_tokenizer())

    def build_components(self, spec: QwenImageSpec, seed: int) -> dict[str, Any]:
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
        """QwenImagePipeline's call as its documentation shows it: ``guidance`` is
        ``true_cfg_scale``, classifier-free guidance against the documented negative prompt
        " " (two transformer passes a step); at 1 or below no negative prompt is given and
        the pipeline runs without guidance. ``guidance_scale`` stays None: Qwen-Image is not
        guidance-distilled (the pipeline warns and ignores it otherwise)."""
        self.check_options(options)
        self.check_generation_size(pipe, height, width)
        result = pipe(
            prompt,
            negative_prompt=" " if guidance > 1 else None,
            true_cfg_scale=guidance,
            height=height,
            width=width,
            num_inference_steps=steps,
            max_sequence_length=max_sequence_length,
            generator=generator,
            callback_on_step_end=callback_on_step_end,
            output_type="np",
        )
        return pictures(result.images[:1])

    @property
    def gguf(self) -> TensorNames:
        """diffusers' own names, as city96's and QuantStack's Qwen-Image files
        (bench/families/qwen_image_gguf.py)."""
        from bench.families.qwen_image_gguf import QWEN_IMAGE_TENSOR_NAMES

        return QWEN_IMAGE_TENSOR_NAMES

    def activations(
        self,
        component: Component,
        pipe: PipelineComponents,
        scenario: Scenario,
        compute_dtype: str,
    ) -> tuple[str, int, str]:
        """Transformer: image + text tokens through a dual-stream block; the VAE: one frame
        decoded at full resolution; Qwen2.5-VL: the template's 34 system tokens plus the prompt
        at max_sequence_length."""
        if component.name == self.denoiser:
            tokens = image_tokens(pipe.components["vae"], scenario.height, scenario.width)
            text = scenario.max_sequence_length
            work, why = transformer_activations(
                component, tokens + text, scenario.batch, compute_dtype
            )
            return "transformer activations", work, f"{tokens} image + {text} text tokens; {why}"
        if "base_dim" in component.config:
            work, why = vae_decode_activations(
                component, scenario.height, scenario.width, scenario.batch
            )
            return "VAE decode activations", work, why
        tokens = scenario.max_sequence_length + TEMPLATE_TOKENS
        work, why = text_encoder_activations(component, tokens, scenario.batch, component.dtype)
        return f"{component.name} activations", work, why


#: Tokens of the chat template around the prompt: the 34 system tokens the pipeline drops and
#: the 5 after the prompt (<|im_end|>, newline, <|im_start|>, assistant, newline).
TEMPLATE_TOKENS = 39

QWEN_IMAGE_FAMILY = QwenImageFamily()
