"""Wan 2.1 / 2.2 (Alibaba Wan team): the text-to-video family, and all about it that is not generic.

WanPipeline: a WanTransformer3DModel (40 blocks of width 5120 for the 14B, 30 of 1536 for the
1.3B; each block self-attention with 3-D rotary positions, cross-attention to the text, a GELU
MLP, all modulated by the timestep) denoising 1×2×2 patches of a 16-channel video latent, the
UMT5-XXL encoder (its last hidden states over at most 512 tokens), the causal-3D AutoencoderKLWan
(8× in space, 4× in time: ``num_frames`` frames are ``1 + (num_frames - 1) / 4`` latent frames)
and UniPC multistep in flow-matching mode (flow shift 3). Guidance is classifier-free
(``guidance_scale``): the pipeline runs the transformer twice a step, conditional and
unconditional, one after the other (two calls of batch 1, not one call of batch 2). Wan 2.2's
text-to-video A14B is the same pipeline with a second expert (``transformer_2``) for the
low-noise steps; its GGUF files use the same names.

This module holds the synthetic specs and presets, its transformer, the pipeline call (its
output: the frames of one video), the transformer's working-memory formula for `bench size`,
and (through wan_gguf) the GGUF tensor names and rules; UMT5 and the causal VAE are the shared
blocks' (bench/blocks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from bench.blocks import text_encoders, vaes
from bench.families.base import Family, PublishedCount, UnsupportedOption
from bench.families.wan_gguf import WAN_TENSOR_NAMES
from bench.gguf.names import TensorNames
from bench.models.synthetic import spec_digest
from bench.sizing.components import DTYPE_BYTES
from bench.sizing.terms import DenoiserStreams

if TYPE_CHECKING:
    from bench.sizing.components import Component, PipelineComponents
    from bench.sizing.terms import Scenario


@dataclass(frozen=True)
class WanSpec:
    """Every size that shapes a synthetic Wan pipeline. Its hash names the cache folder.

    The pipeline's shape rules: the transformer's ``text_dim`` is UMT5's ``d_model``, its
    ``in_channels``/``out_channels`` the VAE's ``z_dim``; the VAE must downsample 3 times in
    space (the pipeline assumes 8×) and twice in time (4×, its ``scale_factor_temporal``).
    """

    transformer: dict[str, Any]
    text_encoder: dict[str, Any]  # UMT5Config
    vae: dict[str, Any]
    # Wan-AI/Wan2.1-T2V-*-Diffusers' scheduler: UniPC in flow-matching mode (diffusers' Wan docs)
    scheduler: dict[str, Any] = field(
        default_factory=lambda: {
            "prediction_type": "flow_prediction",
            "use_flow_sigmas": True,
            "num_train_timesteps": 1000,
            "flow_shift": 3.0,
        }
    )
    dtype: str = "float32"
    #: WanPipeline's own config (Wan 2.2 TI2V: ``expand_timesteps``, one timestep per latent
    #: patch); empty for Wan 2.1
    pipeline: dict[str, Any] = field(default_factory=dict)

    def digest(self, seed: int) -> str:
        """The cache folder's hash (bench.models.synthetic.spec_digest)."""
        return spec_digest(self, seed)


def _transformer(heads: int, ffn: int, layers: int) -> dict[str, Any]:
    """transformer/config.json of Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers (they differ only in
    heads, MLP width and depth; the head dim is 128 in both)."""
    return {
        "patch_size": [1, 2, 2],
        "num_attention_heads": heads,
        "attention_head_dim": 128,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": ffn,
        "num_layers": layers,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "rope_max_seq_len": 1024,
    }


# Tiny: width 256 (4 heads of 64) and MLP 1024, so every quantized block weight has rows of a
# multiple of 256 and the K-quants apply; a 2-layer UMT5 of the same width; a 4-level causal VAE
# of 16 base channels (8× space, 4× time, as the real one). 9 frames at 64×64 take seconds.
TINY = WanSpec(
    transformer={**_transformer(4, 1024, 2), "attention_head_dim": 64, "text_dim": 256},
    text_encoder=text_encoders.umt5_sizes(256, 512, 2, 4),
    vae=vaes.wan_vae_sizes(16, [1, 2, 2, 2], 1),
)

WAN21_T2V_1_3B = WanSpec(
    transformer=_transformer(12, 8960, 30),
    text_encoder=text_encoders.UMT5_XXL,
    vae=vaes.WAN21_VAE,
    dtype="bfloat16",
)
WAN21_T2V_14B = WanSpec(
    transformer=_transformer(40, 13824, 40),
    text_encoder=text_encoders.UMT5_XXL,
    vae=vaes.WAN21_VAE,
    dtype="bfloat16",
)

#: Wan 2.2's VAE (Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json): 48 latent channels, 2×2
#: pixel patches before the encoder (12 input channels), so 16× in space and 4× in time, and a
#: wider decoder. Its trained latent statistics (48 means and stds) are left at 0 and 1: a
#: random-weight build has none, and they change no shape or size.
WAN22_VAE = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "is_residual": True,
    "latents_mean": [0.0] * 48,
    "latents_std": [1.0] * 48,
}
#: Wan2.2-TI2V-5B (text and image to video): width 3072 (24 heads of 128), MLP 14336, 30 blocks,
#: on the 48-channel latents; the same UMT5-XXL; its pipeline expands timesteps per patch; the
#: Diffusers repository's scheduler shift is 5.0.
WAN22_TI2V_5B = WanSpec(
    transformer={
        **_transformer(24, 14336, 30),
        "in_channels": 48,
        "out_channels": 48,
    },
    text_encoder=text_encoders.UMT5_XXL,
    vae=WAN22_VAE,
    scheduler={
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "num_train_timesteps": 1000,
        "flow_shift": 5.0,
    },
    dtype="bfloat16",
    pipeline={"expand_timesteps": True},
)

#: Wan2.2-TI2V-5B's transformer: "5B" is the model's own name (Wan-AI/Wan2.2-TI2V-5B, "a 5B
#: dense model" on its card); built on the meta device it is 4,999,787,712 weights.
PUBLISHED_TI2V_5B_TRANSFORMER = PublishedCount(5.0e9, 0.1e9, "Wan2.2-TI2V-5B: 5B")

#: Tiny Wan 2.2 TI2V: the tiny transformer on 48 latent channels and a small Wan 2.2 VAE (2×2
#: pixel patches, residual blocks, a wider decoder), so the 16×-space path runs on a CPU.
TINY_TI2V = WanSpec(
    transformer={**TINY.transformer, "in_channels": 48, "out_channels": 48},
    text_encoder=TINY.text_encoder,
    vae={
        **WAN22_VAE,
        "base_dim": 16,
        "decoder_base_dim": 32,
        "dim_mult": [1, 2, 2, 2],
        "num_res_blocks": 1,
    },
    scheduler=WAN22_TI2V_5B.scheduler,
    pipeline={"expand_timesteps": True},
)

#: The 1.3B's transformer, the one part it does not share with the 14B: its f16 GGUF file
#: (calcuis/wan-1.3b-gguf's wan2.1-t2v-1_3b-f16.gguf, 2.85 GB, 2 B per weight).
PUBLISHED_1_3B_TRANSFORMER = PublishedCount(
    1.42e9, 0.01e9, "wan2.1-t2v-1_3b-f16.gguf 2.85 GB: 1.42 B"
)

PRESETS: dict[str, WanSpec] = {
    "tiny": TINY,
    "tiny-ti2v": TINY_TI2V,
    "wan2.1-t2v-1.3b": WAN21_T2V_1_3B,
    "wan2.1-t2v-14b": WAN21_T2V_14B,
    "wan2.2-ti2v-5b": WAN22_TI2V_5B,
}


# ---------------------------------------------------------------------------------------------
# Working memory (docs/size.md, "Wan 2.1")

#: Live (tokens × hidden) tensors at the peak of a block, counted from diffusers'
#: WanTransformerBlock and WanAttnProcessor (an estimate, not yet fitted to a GPU measurement):
#: at the rotary embedding of k in self-attention the block's input (1), the modulated input
#: (1), q (roped), k, v (3), the rotary output (1) and its float32 products (x1·cos, x2·sin,
#: their sum: 3 half-width float32 = 3 units at 16-bit, 1.5 at float32). The MLP's peak (input,
#: modulated input, up projection and GELU at ffn_dim each) is taken instead when it is larger.
LIVE_UNITS_HALF = 9
LIVE_UNITS_FLOAT32 = 7


def video_tokens(vae: Component, num_frames: int, height: int, width: int) -> int:
    """Transformer tokens: latent frames × (H / 8 / 2) × (W / 8 / 2) (1×2×2 patches)."""
    side = vaes.spatial_factor(vae.config) * 2
    return vaes.latent_frames(num_frames, vae.config) * (height // side) * (width // side)


def transformer_activations(
    transformer: Component, tokens: int, text_tokens: int, batch: int, dtype: str
) -> tuple[int, str]:
    """The larger of the self-attention and MLP peaks of one block, over video tokens, plus the
    cross-attention's k and v over the text. Classifier-free guidance does not raise it: the
    unconditional pass runs after the conditional one."""
    cfg = transformer.config
    hidden = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
    ffn = int(cfg["ffn_dim"])
    units = LIVE_UNITS_FLOAT32 if dtype == "float32" else LIVE_UNITS_HALF
    attention = units * tokens * hidden
    mlp = tokens * (2 * hidden + 2 * ffn)
    b = DTYPE_BYTES[dtype]
    elements = max(attention, mlp) + 2 * text_tokens * hidden
    where = (
        f"{units} live tensors of tokens×hidden at self-attention"
        if attention >= mlp
        else f"MLP: 2 × hidden + 2 × ffn ({ffn}) per token"
    )
    why = (
        f"{where}, {batch}×{tokens}×{hidden}×{b} B, plus the text's k, v "
        f"({text_tokens} tokens); guidance runs its unconditional pass after, not beside, the "
        "conditional one (SDPA: no score matrix)"
    )
    return batch * elements * b, why


# ---------------------------------------------------------------------------------------------
# The family


class WanFamily(Family):
    """Wan 2.1 / 2.2 text-to-video pipelines (WanPipeline)."""

    name: ClassVar[str] = "wan"
    title: ClassVar[str] = "Wan"
    pipeline_class: ClassVar[str] = "WanPipeline"
    denoiser_class: ClassVar[str] = "WanTransformer3DModel"
    output: ClassVar[Literal["image", "video"]] = "video"
    side_multiple: ClassVar[int] = 16  # Wan 2.1: VAE factor 8 × 2×2 patches
    #: WanPipeline refuses a side that is not a multiple of 16 and rounds the others down to a
    #: multiple of its VAE's scale_factor_spatial × the patch side (32 for Wan 2.2's VAE)
    side_why: ClassVar[str] = "VAE downsamples by 8 and its transformer packs 2×2 patches"
    side_refused: ClassVar[int] = 16
    real_preset: ClassVar[str] = "wan2.1-t2v-14b"
    real_model: ClassVar[str] = "Wan2.1-T2V-14B"
    generation_options: ClassVar[tuple[str, ...]] = ("num_frames",)
    #: Wan 2.1's documented defaults (WanPipeline's num_frames=81; the model card's 16 fps)
    #: WanPipeline's call defaults: Wan 2.1's 480p (832×480 landscape)
    default_height: ClassVar[int] = 480
    default_width: ClassVar[int] = 832
    default_num_frames: ClassVar[int | None] = 81
    default_fps: ClassVar[int | None] = 16
    #: Published figures (docs/size.md, "Wan 2.1"): the Hugging Face model pages of
    #: city96/Wan2.1-T2V-14B-gguf ("14.3B params") and city96/umt5-xxl-encoder-gguf ("5.68B
    #: params"), and wan_2.1_vae.safetensors (254 MB in bf16, calcuis/wan-gguf) for the VAE.
    published_parameters: ClassVar[Mapping[str, PublishedCount]] = {
        "transformer": PublishedCount(14.3e9, 0.1e9, "city96/Wan2.1-T2V-14B-gguf: 14.3B params"),
        "text_encoder": PublishedCount(5.68e9, 0.01e9, "city96/umt5-xxl-encoder-gguf: 5.68B"),
        "vae": PublishedCount(127e6, 1e6, "wan_2.1_vae.safetensors 254 MB in bf16: 127 M"),
    }

    #: Wan-AI's names, as city96's and QuantStack's Wan files (bench/families/wan_gguf.py)
    gguf: ClassVar[TensorNames] = WAN_TENSOR_NAMES
    text_encoder_fields: ClassVar[tuple[str, ...]] = ("text_encoder",)
    #: UMT5's tokenizer is a T5-style sentencepiece unigram (pad 0, eos 1, unk 2)
    tokenizer_kinds: ClassVar[Mapping[str, str]] = {"tokenizer": "t5"}
    scheduler_class: ClassVar[str] = "UniPCMultistepScheduler"
    vae_config_key: ClassVar[str] = "base_dim"

    @property
    def presets(self) -> Mapping[str, WanSpec]:
        return PRESETS

    def blocks(self, spec: WanSpec, tokenizers: Mapping[str, Any]) -> dict[str, Any]:
        """UMT5 and the VAE (no second expert: Wan 2.1's single transformer)."""
        text_encoder = text_encoders.umt5_encoder(spec.text_encoder, tokenizers.get("tokenizer"))
        return {"text_encoder": text_encoder, "vae": vaes.wan_vae("AutoencoderKLWan", spec.vae)}

    def pipeline_options(self, spec: WanSpec) -> dict[str, Any]:
        return dict(spec.pipeline)

    def side_factors(
        self, vae: Mapping[str, Any], transformer: Mapping[str, Any]
    ) -> tuple[int, int]:
        """The VAE's spatial factor (8 for Wan 2.1, 16 for Wan 2.2's, which folds 2×2 pixel
        patches in first) and the transformer's patch height (1×2×2 patches)."""
        patch = transformer.get("patch_size") or [1, 2, 2]
        return vaes.spatial_factor(vae), int(patch[1])

    def check_num_frames(self, num_frames: int) -> None:
        """The VAE packs 4 frames in a latent frame after the first one, so the pipeline makes
        4k+1 frames; it would silently round any other count down. Refused instead, naming the
        nearest counts it makes."""
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise UnsupportedOption(
                "num_frames", f"expected a whole number 4k+1, got {num_frames!r}"
            )
        if (num_frames - 1) % 4:
            below = (num_frames - 1) // 4 * 4 + 1
            raise UnsupportedOption(
                "num_frames",
                f"Wan makes 4k+1 frames (its VAE packs 4 frames per latent frame after the "
                f"first), not {num_frames}; use {below} or {below + 4}",
            )

    def call_arguments(self, guidance: float, options: Mapping[str, Any]) -> dict[str, Any]:
        """WanPipeline's call as its documentation shows it, with no negative prompt (the
        pipeline encodes an empty one for the unconditional pass): ``guidance`` is
        ``guidance_scale`` (above 1 each step runs the transformer twice), ``max_sequence_length``
        UMT5's token count (512 in Wan), ``options["num_frames"]`` the frame count (4k+1;
        the family's 81 when absent)."""
        num_frames = options.get("num_frames") or self.default_num_frames
        assert num_frames is not None
        self.check_num_frames(num_frames)
        return {"negative_prompt": None, "num_frames": num_frames, "guidance_scale": guidance}

    def denoiser_activations(
        self, pipe: PipelineComponents, scenario: Scenario, dtype: str
    ) -> tuple[int, str]:
        """The video's latent tokens through one block."""
        frames = self.frames(scenario)
        tokens = self.denoiser_streams(pipe, scenario).image_tokens
        latent = vaes.latent_frames(frames, pipe.components["vae"].config)
        transformer, text = pipe.components[self.denoiser], scenario.max_sequence_length
        work, why = transformer_activations(transformer, tokens, text, scenario.batch, dtype)
        return work, f"{frames} frames → {latent} latent frames, {tokens} video tokens; {why}"

    def denoiser_streams(self, pipe: PipelineComponents, scenario: Scenario) -> DenoiserStreams:
        """Blocks return the video tokens only (text enters by cross-attention); guidance runs
        the unconditional call under its own cache context: two passes."""
        vae = pipe.components["vae"]
        tokens = video_tokens(vae, self.frames(scenario), scenario.height, scenario.width)
        return DenoiserStreams(tokens, 0, scenario.batch, passes=2)

    def vae_activations(self, vae: Component, scenario: Scenario) -> tuple[int, str]:
        """The causal decoder over every frame."""
        frames = self.frames(scenario)
        return vaes.wan_vae_video_decode_activations(
            vae, frames, scenario.height, scenario.width, scenario.batch
        )

    def frames(self, scenario: Scenario) -> int:
        """The frame count a scenario sizes: its own, else the family's default."""
        frames = getattr(scenario, "num_frames", None) or self.default_num_frames
        assert frames is not None
        return frames


WAN = WanFamily()
