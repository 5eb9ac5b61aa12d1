"""Stable Diffusion 3.5 (Stability AI): the MMDiT family, and all about it that is not generic.

StableDiffusion3Pipeline: an SD3Transformer2DModel (38 joint blocks of 2432 wide at SD3.5
Large's size; each block runs an image and a text stream through one joint attention) denoising
2×2 latent patches, three text encoders — CLIP-L and OpenCLIP bigG (both with their projection:
their pooled outputs are concatenated into the modulation vector, their penultimate hidden
states into the text sequence) and T5-XXL (the rest of the sequence) —, a 16-channel
AutoencoderKL and a flow-matching Euler scheduler (shift 3). Unlike FLUX.1-dev it runs
classifier-free guidance: ``guidance_scale`` doubles the transformer's batch.

This module holds its synthetic specs and presets, its transformer, how the pipeline is
called, its transformer's working-memory formula for `bench size`, and (through sd3_gguf) its
GGUF tensor names and rules; the text encoders and the VAE are the shared blocks'
(bench/blocks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bench.blocks import text_encoders, vaes
from bench.blocks.denoisers import block_peak
from bench.families.base import Family, PublishedCount
from bench.families.sd3_gguf import SD3_TENSOR_NAMES
from bench.gguf.names import TensorNames
from bench.sizing.terms import DenoiserStreams

if TYPE_CHECKING:
    from bench.sizing.components import Component, PipelineComponents
    from bench.sizing.terms import Scenario


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


def _transformer(
    sample: int, layers: int, heads: int, text: int, caption: int, pooled: int, positions: int
) -> dict[str, Any]:
    """An SD3Transformer2DModel config of SD3.5 Large's kind: ``layers`` joint blocks of
    ``heads`` heads of 64, RMS q/k norms, 2×2 patches of 16 latent channels."""
    return {
        "sample_size": sample,
        "patch_size": 2,
        "in_channels": 16,
        "num_layers": layers,
        "attention_head_dim": 64,
        "num_attention_heads": heads,
        "joint_attention_dim": text,
        "caption_projection_dim": caption,
        "pooled_projection_dim": pooled,
        "out_channels": 16,
        "pos_embed_max_size": positions,
        "qk_norm": "rms_norm",
    }


# Tiny: every width inside the joint blocks (256 and the MLP's 1024) is a multiple of 256, so
# the K-quants apply to every quantized tensor; SD3.5 Large's options (RMS q/k norms, no second
# attention) so the tiny model has the same tensor kinds as the real one.
TINY = SD3Spec(
    transformer=_transformer(32, 2, 4, 512, 256, 512, 96),
    clip_l=text_encoders.clip_sizes(256, 1024, 2, 4, 256, hidden_act="quick_gelu"),
    clip_g=text_encoders.clip_sizes(256, 1024, 2, 4, 256, hidden_act="gelu"),
    t5=text_encoders.t5_sizes(512, 1024, 2, 4),
    vae=vaes.autoencoder_kl_sizes([32, 64, 64], 1, 16),
)

# stabilityai/stable-diffusion-3.5-large's published component configs (transformer/,
# text_encoder/ (CLIP-L), text_encoder_2/ (OpenCLIP bigG), text_encoder_3/ (T5-XXL), vae/).
SD35_LARGE = SD3Spec(
    transformer=_transformer(128, 38, 38, 4096, 2432, 2048, 192),
    clip_l=text_encoders.clip_sizes(
        768, 3072, 12, 12, 768, hidden_act="quick_gelu", vocab_size=text_encoders.CLIP_VOCAB
    ),
    clip_g=text_encoders.clip_sizes(
        1280, 5120, 32, 20, 1280, hidden_act="gelu", vocab_size=text_encoders.CLIP_VOCAB
    ),
    t5=text_encoders.T5_XXL,
    vae=vaes.autoencoder_kl_sizes([128, 256, 512, 512], 2, 16, 1.5305, 0.0609),
    dtype="bfloat16",
)

PRESETS: dict[str, SD3Spec] = {"tiny": TINY, "sd3.5-large": SD35_LARGE}

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


def transformer_activations(
    transformer: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """Peak of a joint block: LIVE_UNITS tensors of (image + text tokens) × hidden, at twice
    the batch (classifier-free guidance)."""
    units = (LIVE_UNITS_HALF, LIVE_UNITS_FLOAT32)
    where = f"a joint block (batch ×{CFG_BATCH}: classifier-free guidance; SDPA: no score matrix)"
    return block_peak(transformer, tokens, CFG_BATCH * batch, dtype, units, where)


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
    #: FLUX.1-dev's (9.52 GB and 168 MB in bf16, black-forest-labs/FLUX.1-dev's file sizes).
    published_parameters: ClassVar[Mapping[str, PublishedCount]] = {
        "transformer": PublishedCount(8.1e9, 0.1e9, "SD3.5 Large: 8.1 B (Stability AI)"),
        "text_encoder": PublishedCount(123.65e6, 0.01e6, "OpenCLIP ViT-L-14 text: 123.65 M"),
        "text_encoder_2": PublishedCount(694.66e6, 0.01e6, "OpenCLIP ViT-bigG-14 text: 694.66 M"),
        "text_encoder_3": PublishedCount(4.76e9, 0.005e9, "T5-XXL encoder 9.52 GB: 4.76 B"),
        "vae": PublishedCount(84e6, 0.5e6, "VAE 168 MB in bf16: 84 M"),
    }

    #: Stability AI's names, as city96's SD3.5 files (bench/families/sd3_gguf.py)
    gguf: ClassVar[TensorNames] = SD3_TENSOR_NAMES
    text_encoder_fields: ClassVar[tuple[str, ...]] = ("clip_l", "clip_g", "t5")
    #: CLIP-L's, CLIP-G's (the same kind of BPE tokenizer, as SD3.5's two are) and T5's
    tokenizer_kinds: ClassVar[Mapping[str, str]] = {
        "tokenizer": "clip",
        "tokenizer_2": "clip",
        "tokenizer_3": "t5",
    }
    #: the position table is a buffer diffusers saves with the weights: at the build's dtype
    fill_options: ClassVar[Mapping[str, bool]] = {"cast_buffers": True}

    @property
    def presets(self) -> Mapping[str, SD3Spec]:
        return PRESETS

    def side_factors(
        self, vae: Mapping[str, Any], transformer: Mapping[str, Any]
    ) -> tuple[int, int]:
        """StableDiffusion3Pipeline's vae_scale_factor (2 per VAE level after the first) and
        its transformer's patch_size."""
        return vaes.autoencoder_kl_factor(vae), int(transformer.get("patch_size") or 2)

    def blocks(self, spec: SD3Spec, tokenizers: Mapping[str, Any]) -> dict[str, Any]:
        """CLIP-L and OpenCLIP bigG with their projections (both with CLIP-L's tokenizer ids:
        the vocabulary is the same), T5-XXL and the VAE."""
        clip = tokenizers.get("tokenizer")
        return {
            "text_encoder": text_encoders.clip_text_model(spec.clip_l, clip, projection=True),
            "text_encoder_2": text_encoders.clip_text_model(spec.clip_g, clip, projection=True),
            "text_encoder_3": text_encoders.t5_encoder(spec.t5, tokenizers.get("tokenizer_3")),
            "vae": vaes.autoencoder_kl(spec.vae),
        }

    def call_arguments(self, guidance: float, options: Mapping[str, Any]) -> dict[str, Any]:
        """StableDiffusion3Pipeline's call as its documentation shows it: ``guidance`` is the
        classifier-free guidance scale (above 1 the unconditional branch runs on an empty
        negative prompt); ``max_sequence_length`` is T5's token count (at most 512)."""
        return {"negative_prompt": None, "guidance_scale": guidance}

    block_activations = staticmethod(transformer_activations)

    def denoiser_streams(self, pipe: PipelineComponents, scenario: Scenario) -> DenoiserStreams:
        """Joint blocks return the image and the CLIP + T5 tokens, at the CFG batch."""
        factor = vaes.autoencoder_kl_factor(pipe.components["vae"].config) * 2
        tokens = (scenario.height // factor) * (scenario.width // factor)
        text = CLIP_TOKENS + scenario.max_sequence_length
        return DenoiserStreams(tokens, text, CFG_BATCH * scenario.batch)


SD3 = SD3Family()
