"""FLUX.1 (Black Forest Labs): the first model family, and everything about it that is not generic.

FluxPipeline: a FluxTransformer2DModel (19 double-stream and 38 single-stream blocks at
FLUX.1-dev's size) denoising packed 2×2 latent patches, CLIP-L (pooled) and T5-XXL (sequence)
text encoders, a 16-channel AutoencoderKL and a flow-matching Euler scheduler. This module holds
its synthetic specs and presets, its transformer, how the pipeline is called, its transformer's
working-memory formula for `bench size`, and (through flux_gguf) its GGUF tensor names and
rules; the text encoders and the VAE are the shared blocks' (bench/blocks).

The presets and the builder are those bench/models/synthetic.py had before families existed, so
the cache folders (names, weights, configs) and the predictions are the same as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bench.blocks import text_encoders, vaes
from bench.blocks.denoisers import block_peak
from bench.families.base import Family, PublishedCount
from bench.families.flux_gguf import FLUX_TENSOR_NAMES
from bench.gguf.names import TensorNames
from bench.models.synthetic import spec_digest
from bench.sizing.terms import DenoiserStreams

if TYPE_CHECKING:
    from bench.sizing.components import Component, PipelineComponents
    from bench.sizing.terms import Scenario


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
        return spec_digest(self, seed)


def _transformer(
    in_channels: int,
    layers: int,
    single: int,
    head_dim: int,
    heads: int,
    text: int,
    pooled: int,
    rope: int,
) -> dict[str, Any]:
    """A FluxTransformer2DModel config: ``layers`` double-stream and ``single`` single-stream
    blocks, T5's width ``text`` and CLIP's projection ``pooled`` in, guidance embedded."""
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "num_layers": layers,
        "num_single_layers": single,
        "attention_head_dim": head_dim,
        "num_attention_heads": heads,
        "joint_attention_dim": text,
        "pooled_projection_dim": pooled,
        "guidance_embeds": True,
        "axes_dims_rope": [16, rope, rope],
    }


# Tiny: widths are multiples of 256 so every quantized FLUX tensor admits the K-quants, and the
# whole default matrix runs on two CPU cores in about a minute.
TINY = FluxSpec(
    transformer=_transformer(16, 2, 4, 64, 4, 256, 256, 24),
    clip=text_encoders.clip_sizes(256, 1024, 2, 4, 256),
    t5=text_encoders.t5_sizes(256, 512, 2, 4),
    vae=vaes.autoencoder_kl_sizes([32, 64, 64], 1, 4),
)

# FLUX.1-dev's published architecture: transformer 12B, T5-XXL encoder 4.7B, CLIP-L, its VAE.
FLUX_DEV = FluxSpec(
    transformer=_transformer(64, 19, 38, 128, 24, 4096, 768, 56),
    clip=text_encoders.clip_sizes(768, 3072, 12, 12, 768, vocab_size=text_encoders.CLIP_VOCAB),
    t5=text_encoders.T5_XXL,
    vae=vaes.autoencoder_kl_sizes([128, 256, 512, 512], 2, 16, 0.3611, 0.1159),
    dtype="bfloat16",
)

PRESETS: dict[str, FluxSpec] = {"tiny": TINY, "flux-dev": FLUX_DEV}

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
    factor = vaes.autoencoder_kl_factor(vae.config) * patch
    return (height // factor) * (width // factor)


def transformer_activations(
    transformer: Component, tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """Peak of a single-stream block: LIVE_UNITS tensors of (image + text tokens) × hidden."""
    units = (LIVE_UNITS_HALF, LIVE_UNITS_FLOAT32)
    where = "a single-stream block (SDPA: no score matrix)"
    return block_peak(transformer, tokens, batch, dtype, units, where)


# ---------------------------------------------------------------------------------------------
# The family


class FluxFamily(Family):
    """FLUX.1 [dev] / [schnell]-shaped pipelines (FluxPipeline)."""

    name: ClassVar[str] = "flux"
    title: ClassVar[str] = "FLUX.1"
    pipeline_class: ClassVar[str] = "FluxPipeline"
    denoiser_class: ClassVar[str] = "FluxTransformer2DModel"
    # sides: the base class's 16 (VAE factor 8 × 2×2 patches); FluxPipeline rounds other sides
    # down to a multiple of vae_scale_factor × 2 with only a warning
    real_preset: ClassVar[str] = "flux-dev"
    real_model: ClassVar[str] = "FLUX.1-dev"
    #: black-forest-labs/FLUX.1-dev's component sizes in bf16 (its repository's file sizes:
    #: transformer 23.8 GB, T5-XXL encoder 9.52 GB, CLIP-L 246 MB, VAE 168 MB) at 2 bytes a
    #: weight, to the precision they are published with; the model page's "11.9B params" for
    #: the transformer is the same figure
    published_parameters: ClassVar[Mapping[str, PublishedCount]] = {
        "transformer": PublishedCount(11.9e9, 0.05e9, "transformer 23.8 GB in bf16: 11.9 B"),
        "text_encoder_2": PublishedCount(4.76e9, 0.005e9, "T5-XXL encoder 9.52 GB: 4.76 B"),
        "text_encoder": PublishedCount(123e6, 0.5e6, "CLIP-L 246 MB in bf16: 123 M"),
        "vae": PublishedCount(84e6, 0.5e6, "VAE 168 MB in bf16: 84 M"),
    }

    #: BFL names, as city96's FLUX.1-dev files (bench/families/flux_gguf.py)
    gguf: ClassVar[TensorNames] = FLUX_TENSOR_NAMES
    text_encoder_fields: ClassVar[tuple[str, ...]] = ("clip", "t5")
    tokenizer_kinds: ClassVar[Mapping[str, str]] = {"tokenizer": "clip", "tokenizer_2": "t5"}

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
        return vaes.autoencoder_kl_factor(vae), 2

    def blocks(self, spec: FluxSpec, tokenizers: Mapping[str, Any]) -> dict[str, Any]:
        """CLIP-L (pooled), T5-XXL and the VAE."""
        return {
            "text_encoder": text_encoders.clip_text_model(spec.clip, tokenizers.get("tokenizer")),
            "text_encoder_2": text_encoders.t5_encoder(spec.t5, tokenizers.get("tokenizer_2")),
            "vae": vaes.autoencoder_kl(spec.vae),
        }

    def call_arguments(self, guidance: float, options: Mapping[str, Any]) -> dict[str, Any]:
        """FluxPipeline's call as its documentation shows it; ``guidance`` is the distilled
        guidance scale (an embedding input of FLUX.1-dev, not classifier-free guidance)."""
        return {"guidance_scale": guidance}

    block_activations = staticmethod(transformer_activations)

    def denoiser_streams(self, pipe: PipelineComponents, scenario: Scenario) -> DenoiserStreams:
        """Every block returns the image and the text tokens; one pass per step (guidance is
        distilled: no unconditional call)."""
        tokens = image_tokens(pipe.components["vae"], scenario.height, scenario.width)
        return DenoiserStreams(tokens, scenario.max_sequence_length, scenario.batch)


FLUX = FluxFamily()
