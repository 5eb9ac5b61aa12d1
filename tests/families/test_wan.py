"""Wan, the video family: its registry entry, real architectures, frame rule, GGUF layout and a
tiny generation.

The conformance test (test_conformance.py) checks what every family owes the harness; these
check what is Wan's own: the published Wan 2.1 figures on the meta device (both sizes), the
4k+1 frame rule, names that diffusers' own Wan converter turns back into the model's (including
the image-to-video tensors), the 5-D patch embedding written as the community files write it,
and Q8_0 frames closer to full precision than Q4_K frames.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.families import family_for_architecture, family_for_pipeline
from bench.families import get_family as _get_family
from bench.families.base import UnsupportedOption

WAN = _get_family("wan")


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_finds_wan_by_name_pipeline_and_architecture() -> None:
    assert WAN.output == "video" and WAN.generation_options == ("num_frames",)
    assert (WAN.default_num_frames, WAN.default_fps) == (81, 16)
    assert family_for_pipeline("WanPipeline") is WAN
    assert family_for_architecture("wan") is WAN
    assert WAN.gguf.original_scheme == "wan"


@pytest.mark.parametrize("preset", ["wan2.1-t2v-14b", "wan2.1-t2v-1.3b"])
def test_real_presets_have_the_published_shape_and_counts(preset: str) -> None:
    from bench.families.wan import PUBLISHED_1_3B_TRANSFORMER

    modules = WAN.meta_components(WAN.preset(preset))
    transformer, text = modules["transformer"], modules["text_encoder"]
    cfg = transformer.config
    width, blocks = (5120, 40) if preset == "wan2.1-t2v-14b" else (1536, 30)
    assert cfg.num_attention_heads * cfg.attention_head_dim == width
    assert len(transformer.blocks) == blocks
    assert cfg.text_dim == text.config.d_model == 4096  # the pipeline's shape rule
    assert text.shared.weight is text.encoder.embed_tokens.weight  # one table, counted once
    published = dict(WAN.published_parameters)
    if preset == "wan2.1-t2v-1.3b":
        published["transformer"] = PUBLISHED_1_3B_TRANSFORMER
    for component, figure in published.items():
        count = _count(modules[component])
        assert figure.matches(count), f"{component}: {count:,} vs {figure.source}"


def test_num_frames_must_be_4k_plus_1() -> None:
    for ok in (1, 5, 9, 49, 81):
        WAN.check_num_frames(ok)
    with pytest.raises(UnsupportedOption, match=r"^num_frames: .*not 8; use 5 or 9"):
        WAN.check_num_frames(8)
    with pytest.raises(UnsupportedOption, match=r"^num_frames: .*not 80; use 77 or 81"):
        WAN.check_num_frames(80)
    for bad in (0, -3, 2.0, True):
        with pytest.raises(UnsupportedOption, match="num_frames"):
            WAN.check_num_frames(bad)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedOption, match="makes images"):
        _get_family("flux").check_num_frames(5)


# --- GGUF names ---------------------------------------------------------------------------


def _meta_transformer(**overrides: Any) -> Any:
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights():
        return WanTransformer3DModel(**{**WAN.preset("tiny").transformer, **overrides})


@pytest.mark.parametrize("kind", ["t2v", "i2v"])
def test_original_names_are_what_diffusers_converter_inverts(kind: str) -> None:
    """Every diffusers tensor has a Wan name, and diffusers' own converter maps each Wan name
    back to exactly that tensor (the image-to-video model's extra tensors included)."""
    import torch
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    extra = {"image_dim": 64, "added_kv_proj_dim": 256} if kind == "i2v" else {}
    keys = list(_meta_transformer(**extra).state_dict())
    names = WAN.gguf
    groups = names.groups(keys)
    assert sorted(d for g in groups for d in g.diffusers) == sorted(keys)
    originals = {g.original: g.diffusers[0] for g in groups}
    # each tensor carries its diffusers name as data, so the converter's renaming is visible
    marked = {o: torch.tensor([keys.index(d)]) for o, d in originals.items()}
    converted = convert_wan_transformer_to_diffusers(dict(marked))
    assert {k: int(v) for k, v in converted.items()} == {d: keys.index(d) for d in keys}
    assert names.is_original(list(originals)) and names.scheme(list(originals)) == "wan"
    assert names.groups(list(originals)) == groups  # the same groups from either side
    assert names.scheme(keys) == "diffusers"


def test_precision_follows_the_community_recipe() -> None:
    from gguf import GGMLQuantizationType as T

    from bench.gguf.plan import choose_tensor_type
    from bench.gguf.qtypes import file_quant_type

    transformer = WAN.meta_components(WAN.preset("wan2.1-t2v-14b"))["transformer"]
    types = {}
    for name, p in transformer.named_parameters():
        types[name] = choose_tensor_type(
            name, tuple(p.shape), "BF16", file_quant_type("Q4_K"), WAN.gguf
        )
    assert types["patch_embedding.weight"] == T.F32  # 5-D: fix_5d_tensors.py appends it as F32
    assert types["scale_shift_table"] == T.F32 and types["blocks.3.scale_shift_table"] == T.F32
    for kept in ("condition_embedder.time_proj.weight", "proj_out.weight"):
        assert types[kept] == T.BF16  # lcpp.patch never quantizes them
    assert types["blocks.0.attn1.to_q.weight"] == T.Q4_K
    assert types["blocks.0.ffn.net.2.weight"] == T.Q4_K  # 13824 columns: a multiple of 256


# --- GGUF files and the tiny pipeline -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(bench_cache: Path) -> Path:
    from bench.families.synthetic import ensure_synthetic_pipeline

    return ensure_synthetic_pipeline("tiny", 0, "wan")


@pytest.fixture(scope="module")
def loaded(bench_cache: Path) -> Callable[[str], Any]:
    """Each tiny preset's pipeline loaded once for the module (float32, progress bars off); a
    test that hooks or swaps a part of it puts it back."""
    from bench.families.synthetic import ensure_synthetic_pipeline
    from bench.models.loading import from_pretrained

    pipes: dict[str, Any] = {}

    def load(preset: str) -> Any:
        if preset not in pipes:
            folder = ensure_synthetic_pipeline(preset, 0, "wan")
            pipes[preset] = from_pretrained(str(folder), "float32")
        return pipes[preset]

    return load


@pytest.fixture(scope="module")
def gguf_files(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from bench.families.gguf import quantize_checkpoint

    out = tmp_path_factory.mktemp("wan-gguf")
    files = {}
    for quant in ("Q8_0", "Q4_K"):
        files[quant] = out / f"wan-{quant}.gguf"
        summary = quantize_checkpoint(tiny / "transformer", files[quant], quant, family="wan")
        assert summary.key_names == "wan"
    return files


def _variant() -> Any:
    from bench.backends.gguf import GGUFVariant

    return GGUFVariant(kind="gguf", name="q", quant="Q8_0", compute_dtype="float32")


def _forward(model: Any) -> Any:
    import torch

    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 16, 3, 8, 8, generator=gen)
    text = torch.randn(1, 16, 256, generator=gen)
    with torch.no_grad():
        return model(hidden, torch.tensor([500.0]), text, return_dict=False)[0]


def test_gguf_files_hold_the_5d_patch_embedding_as_community_files_do(gguf_files) -> None:
    from gguf import GGMLQuantizationType as T
    from gguf import GGUFReader

    reader = GGUFReader(gguf_files["Q4_K"])
    assert reader.fields["general.architecture"].contents() == "wan"
    tensors = {t.name: t for t in reader.tensors}
    patch = tensors["patch_embedding.weight"]
    assert patch.tensor_type == T.F32 and tuple(reversed(patch.shape)) == (256, 16, 1, 2, 2)
    assert tensors["blocks.0.modulation"].tensor_type == T.F32
    assert tensors["blocks.0.self_attn.q.weight"].tensor_type == T.Q4_K
    assert tensors["head.head.weight"].tensor_type == T.F16  # float32 source: F16 outside blocks


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K"])
def test_gguf_files_load_through_the_backend_and_match_the_model(tiny, gguf_files, quant) -> None:
    import torch
    from diffusers import WanTransformer3DModel

    from bench.backends.gguf import load_gguf_transformer

    reference = _forward(WanTransformer3DModel.from_pretrained(tiny, subfolder="transformer"))
    model = load_gguf_transformer(str(tiny), _variant(), str(gguf_files[quant]))
    assert model.patch_embedding.weight.shape == (256, 16, 1, 2, 2)
    error = float((_forward(model) - reference).norm() / reference.norm())
    assert error < (0.02 if quant == "Q8_0" else 0.15), error
    assert torch.isfinite(_forward(model)).all()


@pytest.mark.slow
def test_tiny_generation_frames_and_fidelity_order(tiny, loaded, gguf_files) -> None:
    """Five frames of one tiny video per variant, same seed: N RGB frames of the asked size,
    and Q8_0's frames closer to full precision than Q4_K's (PSNR over every frame). One step
    is enough for the order: Q8_0 ~53 dB and Q4_K ~34 dB from full, over 5 seeds checked."""
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from bench.backends.gguf import load_gguf_transformer

    pipe = loaded("tiny")
    full_transformer = pipe.transformer

    def video(transformer: Any) -> np.ndarray:
        pipe.transformer = transformer
        try:
            frames = WAN.generate(
                pipe, "a red fox in snow", height=64, width=80, steps=1, guidance=5.0,
                max_sequence_length=16, generator=torch.Generator("cpu").manual_seed(0),
                options={"num_frames": 5},
            )  # fmt: skip
        finally:
            pipe.transformer = full_transformer
        assert len(frames) == 5
        assert all(f.mode == "RGB" and f.size == (80, 64) for f in frames)
        return np.stack([np.asarray(f) for f in frames]).astype(np.float32)

    full = video(full_transformer)
    assert full.std() > 0 and not np.array_equal(full[0], full[-1])  # frames differ
    psnr = {}
    for quant, path in gguf_files.items():
        frames = video(load_gguf_transformer(str(tiny), _variant(), str(path)))
        psnr[quant] = float(
            peak_signal_noise_ratio(torch.from_numpy(frames), torch.from_numpy(full), 255.0)
        )
    assert psnr["Q8_0"] > psnr["Q4_K"] > 10, psnr


def test_generate_refuses_a_frame_count_the_vae_cannot_make(tiny) -> None:
    with pytest.raises(UnsupportedOption, match="use 5 or 9"):
        WAN.generate(
            object(), "a cat", height=64, width=64, steps=1, guidance=1.0,
            max_sequence_length=8, generator=None, options={"num_frames": 6},
        )  # fmt: skip
    with pytest.raises(UnsupportedOption, match="fps"):
        WAN.check_options({"fps": 16})


def test_wan22_ti2v_5b_has_its_published_shape() -> None:
    """Wan 2.2's dense 5B: 3072 wide, 30 blocks on 48 latent channels, the Wan 2.2 VAE (16× in
    space: 2×2 pixel patches, then 8×), per-patch timesteps in the pipeline, shift 5."""
    from bench.blocks.vaes import spatial_factor
    from bench.families.wan import PUBLISHED_TI2V_5B_TRANSFORMER

    spec = WAN.preset("wan2.2-ti2v-5b")
    modules = WAN.meta_components(spec)
    transformer, vae = modules["transformer"], modules["vae"]
    cfg = transformer.config
    assert (
        cfg.num_attention_heads * cfg.attention_head_dim == 3072 and len(transformer.blocks) == 30
    )
    assert cfg.in_channels == vae.config.z_dim == 48
    assert PUBLISHED_TI2V_5B_TRANSFORMER.matches(_count(transformer)), _count(transformer)
    assert spatial_factor(vae.config) == vae.config.scale_factor_spatial == 16
    assert spec.pipeline == {"expand_timesteps": True} and spec.scheduler["flow_shift"] == 5.0
    assert WAN.published_parameters["text_encoder"].matches(_count(modules["text_encoder"]))


@pytest.mark.parametrize("preset", ["tiny", "tiny-ti2v"])
def test_video_tokens_are_what_the_transformer_sees(preset: str, loaded) -> None:
    """`bench size`'s token count (latent frames × latent patches) against the hidden states the
    transformer is called with in a real tiny generation, for the 8× (2.1) and 16× (2.2) VAE."""
    from types import SimpleNamespace

    import torch

    from bench.families.wan import video_tokens

    pipe = loaded(preset)
    seen: list[tuple[int, ...]] = []

    def record(_module: Any, args: tuple, kwargs: dict) -> None:
        states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        seen.append(tuple(states.shape))

    hook = pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    frames, height, width = 9, 64, 96
    try:
        out = WAN.generate(
            pipe, "a cat", height=height, width=width, steps=1, guidance=1.0,
            max_sequence_length=16, generator=torch.Generator().manual_seed(0),
            options={"num_frames": frames},
        )  # fmt: skip
    finally:
        hook.remove()
    assert len(out) == frames and out[0].size == (width, height)
    _, _, f, h, w = seen[0]
    vae = SimpleNamespace(config=dict(pipe.vae.config))
    assert video_tokens(vae, frames, height, width) == f * (h // 2) * (w // 2)  # type: ignore[arg-type]


def test_wan22_sides_follow_its_16x_vae(loaded) -> None:
    """Wan 2.2's VAE downsamples by 16: WanPipeline itself turns a 48-pixel side into 32 (with
    only a log warning), so the family's rule for its presets is 32, and a cell refuses 48
    before the pipeline runs instead of recording a 48×64 video made at 32×64."""
    import torch

    assert WAN.preset_side_rule("wan2.2-ti2v-5b").multiple == 32
    assert WAN.preset_side_rule("tiny-ti2v").multiple == 32
    assert WAN.preset_side_rule("wan2.1-t2v-14b").multiple == 16
    pipe = loaded("tiny-ti2v")
    made = pipe(
        "a cat", height=48, width=64, num_frames=1, num_inference_steps=1, guidance_scale=1.0,
        max_sequence_length=8, generator=torch.Generator().manual_seed(0), output_type="np",
    ).frames[0]  # fmt: skip
    assert made.shape[-3:-1] == (32, 64)  # what the rule protects against
    assert WAN.pipeline_side_rule(pipe).multiple == 32
    with pytest.raises(UnsupportedOption, match=r"^height: expected a multiple of 32 .*32 or 64"):
        WAN.generate(
            pipe, "a cat", height=48, width=64, steps=1, guidance=1.0, max_sequence_length=8,
            generator=torch.Generator().manual_seed(0), options={"num_frames": 1},
        )  # fmt: skip
