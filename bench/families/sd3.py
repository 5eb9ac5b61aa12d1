"""Stable Diffusion 3.5 (Stability AI): the MMDiT family, and all about it that is not generic.

StableDiffusion3Pipeline: an SD3Transformer2DModel (38 joint blocks of 2432 wide at SD3.5
Large's size; each block runs an image and a text stream through one joint attention) denoising
2×2 latent patches, three text encoders — CLIP-L and OpenCLIP bigG (both with their projection:
their pooled outputs are concatenated into the modulation vector, their penultimate hidden
states into the text sequence) and T5-XXL (the rest of the sequence) —, a 16-channel
AutoencoderKL and a flow-matching Euler scheduler (shift 3). Unlike FLUX.1-dev it runs
classifier-free guidance: ``guidance_scale`` doubles the transformer's batch.

This module holds its synthetic specs and presets, how its components are built, how the
pipeline is called and its output taken, its working-memory formulas for `bench size`, and
(through sd3_gguf) its GGUF tensor names and rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bench.families import flux
from bench.families.base import Family, PublishedCount, StepCallback, pictures

if TYPE_CHECKING:
    from PIL.Image import Image

    from bench.gguf.names import TensorNames
    from bench.size.components import Component, PipelineComponents
    from bench.size.predict import Scenario


@dataclass(frozen=True)
class SD3Spec:
    """Every size that shapes a synthetic SD3 pipeline. Its hash names the cache folder.

    The pipeline's shape rules: ``pooled_projection_dim`` is the sum of the two CLIP
    projections, ``joint_attention_dim`` is T5's ``d_model`` and at least the two CLIP widths
    together (their hidden states are concatenated, then zero-padded to T5's width), the
    transformer's ``in_channels`` are the VAE's latent channels.
    """

    transformer: dict[str, Any]
    clip_l: dict[str, Any]
    clip_g: dict[str, Any]
    t5: dict[str, Any]
    vae: dict[str, Any]
    scheduler: dict[str, Any] = field(default_factory=lambda: {"shift": 3.0})
    dtype: str = "float32"


# Tiny: every width inside the joint blocks (256 and the MLP's 1024) is a multiple of 256, so
# the K-quants apply to every quantized tensor; SD3.5 Large's options (RMS q/k norms, no second
# attention) so the tiny model has the same tensor kinds as the real one.
TINY = SD3Spec(
    transformer={
        "sample_size": 32,
        "patch_size": 2,
        "in_channels": 16,
        "num_layers": 2,
        "attention_head_dim": 64,
        "num_attention_heads": 4,
        "joint_attention_dim": 512,
        "caption_projection_dim": 256,
        "pooled_projection_dim": 512,
        "out_channels": 16,
        "pos_embed_max_size": 96,
        "qk_norm": "rms_norm",
    },
    clip_l={
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": 256,
        "hidden_act": "quick_gelu",
    },
    clip_g={
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": 256,
        "hidden_act": "gelu",
    },
    t5={
        "d_model": 512,
        "d_kv": 64,
        "d_ff": 1024,
        "num_layers": 2,
        "num_heads": 4,
        "feed_forward_proj": "gated-gelu",
    },
    vae={
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "latent_channels": 16,
        "norm_num_groups": 32,
        "scaling_factor": 1.0,
        "shift_factor": 0.0,
    },
)

# stabilityai/stable-diffusion-3.5-large's published component configs (transformer/,
# text_encoder/ (CLIP-L), text_encoder_2/ (OpenCLIP bigG), text_encoder_3/ (T5-XXL), vae/).
SD35_LARGE = SD3Spec(
    transformer={
        "sample_size": 128,
        "patch_size": 2,
        "in_channels": 16,
        "num_layers": 38,
        "attention_head_dim": 64,
        "num_attention_heads": 38,
        "joint_attention_dim": 4096,
        "caption_projection_dim": 2432,
        "pooled_projection_dim": 2048,
        "out_channels": 16,
        "pos_embed_max_size": 192,
        "qk_norm": "rms_norm",
    },
    clip_l={
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
        "vocab_size": 49408,
    },
    clip_g={
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 20,
        "max_position_embeddings": 77,
        "projection_dim": 1280,
        "hidden_act": "gelu",
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
        "scaling_factor": 1.5305,
        "shift_factor": 0.0609,
    },
    dtype="bfloat16",
)

PRESETS: dict[str, SD3Spec] = {"tiny": TINY, "sd3.5-large": SD35_LARGE}

# Special-token ids of the real tokenizers, FLUX's (both CLIP tokenizers of SD3.5 share CLIP-L's
# vocabulary; the T5 is the same google/t5-v1_1-xxl): used when a spec is sized without
# building the local tokenizers.
REAL_CLIP_TOKEN_IDS = flux.REAL_CLIP_TOKEN_IDS
REAL_T5_TOKEN_IDS = flux.REAL_T5_TOKEN_IDS


def meta_components(
    spec: SD3Spec,
    clip_token_ids: dict[str, int] | None = None,
    t5_token_ids: dict[str, int] | None = None,
    clip_vocab: int | None = None,
    t5_vocab: int | None = None,
) -> dict[str, Any]:
    """The five model components of a spec on the meta device: shapes without memory.

    Vocabulary sizes come from the spec when it names them, else from the arguments.
    """
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    clip_ids = clip_token_ids or REAL_CLIP_TOKEN_IDS
    configs = {
        "text_encoder": {"vocab_size": clip_vocab, **spec.clip_l, **clip_ids},
        "text_encoder_2": {"vocab_size": clip_vocab, **spec.clip_g, **clip_ids},
        "text_encoder_3": {
            "vocab_size": t5_vocab,
            **spec.t5,
            **(t5_token_ids or REAL_T5_TOKEN_IDS),
        },
    }
    if any(cfg["vocab_size"] is None for cfg in configs.values()):
        raise ValueError("the spec names no vocabulary sizes: pass clip_vocab and t5_vocab")
    levels = len(spec.vae["block_out_channels"])
    with init_empty_weights():
        components = {
            "transformer": SD3Transformer2DModel(**spec.transformer),
            "text_encoder": CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder"])),
            "text_encoder_2": CLIPTextModelWithProjection(
                CLIPTextConfig(**configs["text_encoder_2"])
            ),
            "text_encoder_3": T5EncoderModel(T5Config(**configs["text_encoder_3"])),
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
    components["text_encoder_3"].tie_weights()  # T5 shares its input embedding table
    return components


def _local_tokenizers() -> tuple[Any, Any, Any]:
    """CLIP-L's, CLIP-G's (the same kind of BPE tokenizer, as SD3.5's two are) and T5's."""
    from bench.models.tokenizers import build_clip_tokenizer, build_t5_tokenizer

    return build_clip_tokenizer(), build_clip_tokenizer(), build_t5_tokenizer()


def _local_meta_components(spec: SD3Spec, clip_tokenizer: Any, t5_tokenizer: Any) -> dict:
    """Meta components with the local tokenizers' special tokens and vocabulary sizes."""
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


def build_components(spec: SD3Spec, seed: int) -> dict[str, Any]:
    """StableDiffusion3Pipeline's constructor arguments: random-weight models, local
    tokenizers, scheduler (no IP-Adapter image encoder)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from bench.models.synthetic import fill_components

    dtype = getattr(torch, spec.dtype)
    clip_l_tokenizer, clip_g_tokenizer, t5_tokenizer = _local_tokenizers()
    modules = _local_meta_components(spec, clip_l_tokenizer, t5_tokenizer)
    fill_components(modules, seed, dtype, cast_buffers=True)  # the position table, at the dtype
    return {
        **modules,
        "tokenizer": clip_l_tokenizer,
        "tokenizer_2": clip_g_tokenizer,
        "tokenizer_3": t5_tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(**spec.scheduler),
    }


# ---------------------------------------------------------------------------------------------
# Working memory (docs/size.md, SD3.5 section)

#: CLIP's fixed sequence: both CLIP encoders' hidden states fill the first 77 text tokens.
CLIP_TOKENS = 77
#: Live (tokens × hidden) tensors at the peak of a joint block, in units of one such tensor at
#: the compute dtype, over image and text tokens together: the block's input and its residual
#: (2), the normed input (1), q, k, v (3) and their joint concatenation (3, torch.cat copies),
#: the attention output (1) and the RMS q/k norms' float32 temporaries (2 at 16-bit, none at
#: float32). An estimate from the block's code, not yet checked against a measured peak.
LIVE_UNITS_HALF = 12
LIVE_UNITS_FLOAT32 = 10
#: Classifier-free guidance runs the conditional and unconditional batch together.
CFG_BATCH = 2


def image_tokens(vae: Component, height: int, width: int, patch: int = 2) -> int:
    """Latent patches: the VAE divides by 2^(levels-1), the transformer's patch embedding by 2."""
    factor = 2 ** (len(vae.config.get("block_out_channels", [0, 0, 0, 0])) - 1) * patch
    return (height // factor) * (width // factor)


def transformer_activations(
    transformer: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """Peak of a joint block: LIVE_UNITS tensors of (image + text tokens) × hidden, at twice
    the batch (classifier-free guidance)."""
    from bench.size.components import DTYPE_BYTES

    cfg = transformer.config
    hidden = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
    units = LIVE_UNITS_FLOAT32 if dtype == "float32" else LIVE_UNITS_HALF
    rows = CFG_BATCH * batch
    nbytes = units * rows * tokens * hidden * DTYPE_BYTES[dtype]
    why = (
        f"{units} live tensors of tokens×hidden = {units}×{rows}×{tokens}×{hidden}×"
        f"{DTYPE_BYTES[dtype]} B at the peak of a joint block (batch ×{CFG_BATCH}: "
        "classifier-free guidance; SDPA: no score matrix)"
    )
    return nbytes, why


# ---------------------------------------------------------------------------------------------
# The family


class SD3Family(Family):
    """Stable Diffusion 3 / 3.5-shaped pipelines (StableDiffusion3Pipeline)."""

    name: ClassVar[str] = "sd3"
    title: ClassVar[str] = "SD3.5"
    pipeline_class: ClassVar[str] = "StableDiffusion3Pipeline"
    denoiser_class: ClassVar[str] = "SD3Transformer2DModel"
    #: the pipeline refuses sides that are not a multiple of VAE factor × patch (8 × 2 for the
    #: real VAE; the tiny VAE's factor 4 divides it)
    side_multiple: ClassVar[int] = 16
    side_why: ClassVar[str] = "VAE downsamples by 8 and its transformer's patches are 2×2"
    side_refused: ClassVar[int] = 16
    real_preset: ClassVar[str] = "sd3.5-large"
    real_model: ClassVar[str] = "Stable Diffusion 3.5 Large"
    #: Transformer: Stability AI's announcement of SD3.5 ("Stable Diffusion 3.5 Large: At 8.1
    #: billion parameters", stability.ai/news/introducing-stable-diffusion-3-5, 2024-10-22).
    #: CLIP-L and OpenCLIP bigG text towers with their projections: OpenCLIP's model profile
    #: table (mlfoundations/open_clip docs/model_profile.csv: ViT-L-14 text 123.65 M,
    #: ViT-bigG-14 text 694.66 M). T5-XXL encoder and the 16-channel VAE: the same modules as
    #: FLUX.1-dev's (9.52 GB and 168 MB in bf16, shared/reference/published-figures.md).
    published_parameters: ClassVar[Mapping[str, PublishedCount]] = {
        "transformer": PublishedCount(8.1e9, 0.1e9, "SD3.5 Large: 8.1 B (Stability AI)"),
        "text_encoder": PublishedCount(123.65e6, 0.01e6, "OpenCLIP ViT-L-14 text: 123.65 M"),
        "text_encoder_2": PublishedCount(694.66e6, 0.01e6, "OpenCLIP ViT-bigG-14 text: 694.66 M"),
        "text_encoder_3": PublishedCount(4.76e9, 0.005e9, "T5-XXL encoder 9.52 GB: 4.76 B"),
        "vae": PublishedCount(84e6, 0.5e6, "VAE 168 MB in bf16: 84 M"),
    }

    @property
    def presets(self) -> Mapping[str, SD3Spec]:
        return PRESETS

    def side_factors(
        self, vae: Mapping[str, Any], transformer: Mapping[str, Any]
    ) -> tuple[int, int]:
        """StableDiffusion3Pipeline's vae_scale_factor (2 per VAE level after the first) and
        its transformer's patch_size."""
        levels = len(vae.get("block_out_channels") or [0, 0, 0, 0])
        return 2 ** (levels - 1), int(transformer.get("patch_size") or 2)

    def meta_components(self, spec: SD3Spec) -> dict[str, Any]:
        """Real tokenizers' ids when the spec names its vocabularies (sizing SD3.5 Large),
        else the local tokenizers' ids and vocabularies (as the tiny build)."""
        if all("vocab_size" in cfg for cfg in (spec.clip_l, spec.clip_g, spec.t5)):
            return meta_components(spec)
        clip_l, _, t5 = _local_tokenizers()
        return _local_meta_components(spec, clip_l, t5)

    def build_components(self, spec: SD3Spec, seed: int) -> dict[str, Any]:
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
        """StableDiffusion3Pipeline's call as its documentation shows it: ``guidance`` is the
        classifier-free guidance scale (above 1 the unconditional branch runs on an empty
        negative prompt), ``max_sequence_length`` T5's token count (at most 512)."""
        self.check_options(options)
        self.check_generation_size(pipe, height, width)
        result = pipe(
            prompt,
            negative_prompt=None,
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
        """Stability AI's names, as city96's SD3.5 files (bench/families/sd3_gguf.py)."""
        from bench.families.sd3_gguf import SD3_TENSOR_NAMES

        return SD3_TENSOR_NAMES

    def activations(
        self,
        component: Component,
        pipe: PipelineComponents,
        scenario: Scenario,
        compute_dtype: str,
    ) -> tuple[str, int, str]:
        """Transformer: image + CLIP + T5 tokens through a joint block at the CFG batch; the
        VAE: its decoder at full resolution; CLIP and T5: their encoders."""
        from bench.size.predict import text_encoder_activations, vae_decode_activations

        if component.name == self.denoiser:
            tokens = image_tokens(pipe.components["vae"], scenario.height, scenario.width)
            text = CLIP_TOKENS + scenario.max_sequence_length
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


SD3 = SD3Family()
