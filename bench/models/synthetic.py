"""An offline FLUX pipeline with random weights, built deterministically and cached on disk.

No weights can be downloaded, so the harness makes its own pipeline: the same classes, the same
saved folder layout and the same loading path as the real FLUX.1-dev, at a tiny scale (for CPUs
and tests) or at FLUX.1-dev's real sizes (for measuring memory and speed on a GPU without the
real weights). Weights are filled tensor by tensor from a generator seeded by (seed, tensor
name), so a build is reproducible across machines and independent of module creation order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

BUILDER_VERSION = 2


@dataclass(frozen=True)
class SyntheticSpec:
    """Every size that shapes the synthetic pipeline. Its hash names the cache folder."""

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
        blob = json.dumps(
            {"spec": asdict(self), "seed": seed, "builder": BUILDER_VERSION}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Tiny: widths are multiples of 256 so every quantized FLUX tensor admits the K-quants, and the
# whole default matrix runs on two CPU cores in about a minute.
TINY = SyntheticSpec(
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
FLUX_DEV = SyntheticSpec(
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

PRESETS: dict[str, SyntheticSpec] = {"tiny": TINY, "flux-dev": FLUX_DEV}


def cache_root() -> Path:
    """Where built pipelines and GGUF files live; BENCH_CACHE_DIR overrides."""
    env = os.environ.get("BENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bench-harness"


def synthetic_dir(preset: str, seed: int) -> Path:
    spec = PRESETS[preset]
    return cache_root() / "synthetic" / f"{preset}-seed{seed}-{spec.digest(seed)}"


def _seeded_generator(seed: int, name: str) -> torch.Generator:
    import torch

    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def fill_random_weights(
    module: torch.nn.Module, seed: int, prefix: str, dtype: torch.dtype
) -> None:
    """Deterministic initialisation that keeps activations in range through deep stacks.

    Matrices get N(0, 1/fan_in) (unit-variance outputs), embedding tables N(0, 0.02²), norm
    scales 1, biases small values. Each tensor depends only on (seed, its name). Parameters may
    be on the meta device (a full-size model is never initialised twice).
    """
    import torch
    from accelerate.utils import set_module_tensor_to_device

    with torch.no_grad():
        _fill(module, seed, prefix, dtype, set_module_tensor_to_device)


def _fill(module: Any, seed: int, prefix: str, dtype: Any, setter: Any) -> None:
    """Tensors are made on several threads: torch's CPU randn runs on one core per call, so a
    full-size build one tensor at a time takes minutes. Each tensor has its own generator, so
    the values are the same whatever the thread count or completion order."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    def make(item: tuple[str, Any]) -> Any:
        name, tensor = item
        gen = _seeded_generator(seed, f"{prefix}.{name}")
        # Scaled in place (the same values as out of place): one float32 copy less to allocate.
        if tensor.ndim >= 2:
            if "embed" in name and tensor.ndim == 2 and "linear" not in name:
                values = torch.randn(tensor.shape, generator=gen).mul_(0.02)
            else:
                values = torch.randn(tensor.shape, generator=gen).div_(tensor[0].numel() ** 0.5)
        elif name.endswith("bias"):
            values = torch.randn(tensor.shape, generator=gen).mul_(0.01)
        else:  # norm scales and other vectors
            values = torch.ones(tensor.shape)
        return values.to(dtype)

    params = list(module.named_parameters())
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        for (name, _), values in zip(params, pool.map(make, params), strict=True):
            setter(module, name, "cpu", value=values)


# Special-token ids of the real CLIP-L and T5 tokenizers (openai/clip-vit-large-patch14,
# google/t5-v1_1-xxl): used when a spec is sized without building its local tokenizers.
REAL_CLIP_TOKEN_IDS = {"bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1}
REAL_T5_TOKEN_IDS = {"pad_token_id": 0, "eos_token_id": 1}


def meta_components(
    spec: SyntheticSpec,
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


def _build_components(spec: SyntheticSpec, seed: int) -> dict[str, Any]:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from bench.models.tokenizers import build_clip_tokenizer, build_t5_tokenizer

    dtype = getattr(torch, spec.dtype)
    clip_tokenizer = build_clip_tokenizer()
    t5_tokenizer = build_t5_tokenizer()
    modules = meta_components(
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
    transformer, text_encoder = modules["transformer"], modules["text_encoder"]
    text_encoder_2, vae = modules["text_encoder_2"], modules["vae"]

    for prefix, module in (
        ("transformer", transformer),
        ("text_encoder", text_encoder),
        ("text_encoder_2", text_encoder_2),
        ("vae", vae),
    ):
        fill_random_weights(module, seed, prefix, dtype)
        if hasattr(module, "tie_weights"):  # T5 shares its input embedding table
            module.tie_weights()
        module.eval()

    return {
        "transformer": transformer,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "vae": vae,
        "tokenizer": clip_tokenizer,
        "tokenizer_2": t5_tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(**spec.scheduler),
    }


def build_synthetic_pipeline(preset: str, seed: int, out_dir: Path) -> Path:
    """Build the pipeline and save it as an ordinary diffusers folder at `out_dir`."""
    from diffusers import FluxPipeline

    from bench.environment import quiet_library_output

    quiet_library_output()
    pipe = FluxPipeline(**_build_components(PRESETS[preset], seed))
    pipe.save_pretrained(out_dir, safe_serialization=True, max_shard_size="10GB")
    (out_dir / "synthetic.json").write_text(
        json.dumps(
            {
                "preset": preset,
                "seed": seed,
                "builder_version": BUILDER_VERSION,
                "spec": asdict(PRESETS[preset]),
                "note": "random weights: images show quantization error, not image quality",
            },
            indent=2,
        )
    )
    return out_dir


def ensure_synthetic_pipeline(preset: str, seed: int) -> Path:
    """The cached pipeline folder, built first if absent (atomically: a crash leaves none)."""
    target = synthetic_dir(preset, seed)
    if (target / "model_index.json").is_file() and (target / "synthetic.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build_synthetic_pipeline(preset, seed, staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model_index.json").is_file():  # not a concurrent builder's win
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
