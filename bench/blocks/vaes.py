"""VAEs several families share: AutoencoderKL (FLUX.1, SD3.5) and the causal 3-D Wan VAE (Wan
2.1/2.2's AutoencoderKLWan; Qwen-Image's AutoencoderKLQwenImage has Wan 2.1's layout).

For each: its model on the meta device, its down-sampling factors (what an image side must be a
multiple of, how many latent tokens an image or video makes) and the working memory of its
decoder (docs/size.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.blocks.meta import on_meta
from bench.sizing.components import DTYPE_BYTES, Component

# ---------------------------------------------------------------------------------------------
# AutoencoderKL


def autoencoder_kl_sizes(
    channels: list[int],
    layers_per_block: int,
    latent_channels: int,
    scaling_factor: float = 1.0,
    shift_factor: float = 0.0,
) -> dict[str, Any]:
    """An AutoencoderKL's sizes as a spec writes them (GroupNorm of 32 groups)."""
    return {
        "block_out_channels": channels,
        "layers_per_block": layers_per_block,
        "latent_channels": latent_channels,
        "norm_num_groups": 32,
        "scaling_factor": scaling_factor,
        "shift_factor": shift_factor,
    }


def autoencoder_kl(sizes: Mapping[str, Any]) -> Any:
    """An AutoencoderKL of RGB images with one down and one up block per level and no quant
    convs (FLUX.1's and SD3.5's layout), on the meta device."""
    import diffusers  # diffusers: heavy, loaded only to build a model

    levels = len(sizes["block_out_channels"])
    return on_meta(
        diffusers.AutoencoderKL,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        use_quant_conv=False,
        use_post_quant_conv=False,
        **sizes,
    )


def autoencoder_kl_factor(config: Mapping[str, Any]) -> int:
    """Pixels per latent pixel along a side: 2 per level after the first (8 at four levels),
    as the pipelines' ``vae_scale_factor``."""
    return 2 ** (len(config.get("block_out_channels") or [0, 0, 0, 0]) - 1)


def autoencoder_kl_decode_activations(
    vae: Component, height: int, width: int, batch: int
) -> tuple[int, str]:
    """Largest set of live conv activations in the decoder (AutoencoderKL's UpDecoderBlock2D).

    At each up block the first resnet holds its input, the GroupNorm output and the SiLU output
    (3 × C_in × pixels); an upsampler holds its input and the interpolated and convolved
    outputs at twice the resolution; the mid-block attention ~6 × C × latent pixels.
    """
    cfg = vae.config
    channels = list(reversed(cfg["block_out_channels"]))
    levels = len(channels)
    b = DTYPE_BYTES[vae.dtype]
    h0, w0 = height // 2 ** (levels - 1), width // 2 ** (levels - 1)
    candidates: list[tuple[int, str]] = [(6 * channels[0] * h0 * w0, "mid-block attention")]
    for i, out_ch in enumerate(channels):
        pixels = (h0 << i) * (w0 << i)
        c_in = channels[i - 1] if i else channels[0]
        candidates.append((3 * c_in * pixels, f"up block {i} first resnet ({c_in} ch)"))
        if i < levels - 1:
            candidates.append(
                (out_ch * pixels + 2 * out_ch * pixels * 4, f"up block {i} upsampler ({out_ch} ch)")
            )
    elements, where = max(candidates)
    why = f"{where} at {height}×{width}: {elements:,} values × {b} B × batch {batch}"
    return elements * b * batch, why


# ---------------------------------------------------------------------------------------------
# The Wan VAE (causal 3-D)

#: Live activations of the running residual block (input, norm, SiLU, the causal conv's copy
#: of its input with the cached frames).
VAE_LIVE_UNITS = 4
#: Frames each causal conv caches from the previous chunk (diffusers' CACHE_T).
VAE_CACHE_FRAMES = 2


def wan_vae_sizes(base_dim: int, dim_mult: list[int], num_res_blocks: int) -> dict[str, Any]:
    """A Wan 2.1-layout VAE's sizes as a spec writes them (16 latent channels, no attention,
    8× in space and 4× in time)."""
    return {
        "base_dim": base_dim,
        "z_dim": 16,
        "dim_mult": dim_mult,
        "num_res_blocks": num_res_blocks,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
    }


#: Wan 2.1's VAE (vae/config.json of Wan-AI/Wan2.1-T2V-*-Diffusers; AutoencoderKLWan's defaults;
#: Qwen-Image's AutoencoderKLQwenImage has the same sizes).
WAN21_VAE = wan_vae_sizes(96, [1, 2, 4, 4], 2)


def wan_vae(class_name: str, sizes: Mapping[str, Any]) -> Any:
    """A causal Wan VAE (diffusers' ``class_name``: AutoencoderKLWan, AutoencoderKLQwenImage) on
    the meta device."""
    import diffusers  # diffusers: heavy, loaded only to build a model

    return on_meta(getattr(diffusers, class_name), **sizes)


def temporal_factor(config: Mapping[str, Any]) -> int:
    """Frames per latent frame after the first: 2 per temporal downsample stage (4 for Wan)."""
    return 2 ** sum(bool(t) for t in config.get("temperal_downsample") or [False, True, True])


def spatial_factor(config: Mapping[str, Any]) -> int:
    """Pixels per latent pixel along a side: 2 per downsample stage (8 for Wan 2.1), times the
    pixel patches the Wan 2.2 VAE folds in first (2: 16 in all)."""
    stages = 2 ** len(config.get("temperal_downsample") or [False, True, True])
    return stages * int(config.get("patch_size") or 1)


def latent_frames(num_frames: int, config: Mapping[str, Any]) -> int:
    """The causal VAE keeps the first frame alone, then packs each ``factor`` frames in one."""
    return 1 + (num_frames - 1) // temporal_factor(config)


def wan_vae_frame_decode_activations(
    vae: Component, height: int, width: int, batch: int
) -> tuple[int, str]:
    """Causal-3D decoder of one frame (an image): at each resolution its residual blocks hold
    about four activations of the stage's channels (input, norm, SiLU, the causal conv's padded
    copy)."""
    cfg = vae.config
    base, mult = int(cfg["base_dim"]), list(cfg["dim_mult"])
    levels = len(cfg["temperal_downsample"])
    b = DTYPE_BYTES[vae.dtype]
    candidates = []
    for i, m in enumerate(reversed(mult)):  # lowest resolution first
        pixels = (height >> (levels - min(i, levels))) * (width >> (levels - min(i, levels)))
        candidates.append((VAE_LIVE_UNITS * base * m * pixels, f"stage {i} ({base * m} ch)"))
    elements, where = max(candidates)
    why = f"{where} at {height}×{width}: 4 × {elements // 4:,} values × {b} B × batch {batch}"
    return elements * b * batch, why


def _decoder_stages(cfg: Mapping[str, Any]) -> list[tuple[int, int, int]]:
    """(channels, pixel divisor, frames per chunk) of each decoder stage, lowest resolution
    first: the decoder mirrors the encoder's ``dim_mult`` and upsamples in time where the
    encoder downsampled (each latent frame becomes up to 4 frames by the last stages)."""
    base, mult = int(cfg.get("decoder_base_dim") or cfg["base_dim"]), list(cfg["dim_mult"])
    ups = list(reversed(cfg["temperal_downsample"]))
    stages = []
    # The Wan 2.2 VAE decodes at half the side and unfolds 2×2 pixel patches at the end.
    patch = int(cfg.get("patch_size") or 1)
    divisor, frames = 2 ** len(ups) * patch, 1
    for i, m in enumerate(reversed(mult)):
        stages.append((base * m, divisor, frames))
        if i < len(ups):
            divisor //= 2
            frames *= 2 if ups[i] else 1
    return stages


def wan_vae_video_decode_activations(
    vae: Component, num_frames: int, height: int, width: int, batch: int
) -> tuple[int, str]:
    """AutoencoderKLWan decodes one latent frame at a time: the running stage's residual blocks
    at their chunk of frames, the causal cache of every conv (2 frames of its input, kept for
    the next chunk), and the decoded video so far, which torch.cat copies once per chunk."""
    cfg = vae.config
    b = DTYPE_BYTES[vae.dtype]
    blocks = int(cfg["num_res_blocks"]) + 1  # per decoder stage
    stages = _decoder_stages(cfg)
    pixels = height * width
    running = max(VAE_LIVE_UNITS * c * (pixels // d**2) * f for c, d, f in stages)
    cache = sum(VAE_CACHE_FRAMES * 2 * blocks * c * (pixels // d**2) for c, d, _ in stages)
    video = 2 * 3 * num_frames * pixels
    elements = running + cache + video
    why = (
        f"{num_frames} frames at {height}×{width}, one latent frame at a time: running stage "
        f"{running:,} values, causal caches {cache:,}, the video and its torch.cat copy "
        f"{video:,}; × {b} B × batch {batch}"
    )
    return batch * elements * b, why
