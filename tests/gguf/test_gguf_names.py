"""diffusers <-> BFL key mapping, checked against diffusers' own single-file converter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers
from gguf import GGUFReader
from safetensors.torch import load_file, save_file

from bench.families.flux_gguf import diffusers_to_bfl_name
from bench.families.gguf import quantize_checkpoint
from bench.gguf.errors import ConversionError
from bench.gguf.plan import load
from bench.gguf.qtypes import file_quant_type
from bench.gguf.source import Checkpoint
from tests.gguf.flux_names import build_plan


def _flux1_width_state_dict(pipe: Path) -> dict[str, torch.Tensor]:
    """The tiny model's keys with FLUX.1's row counts (width 3072, mlp 12288) but 3 columns.

    diffusers' converter hard-codes width 3072 when it splits ``linear1``, and only ever splits
    or concatenates along dim 0, so narrow columns keep this test small while exercising the
    real split sizes.
    """
    sd = load_file(pipe / "transformer" / "diffusion_pytorch_model.safetensors")
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, v in sd.items():
        shape = list(v.shape)
        if shape[0] % 256 == 0:
            shape[0] = shape[0] // 256 * 3072
        if len(shape) > 1:
            shape[1] = 3
        out[k] = torch.randn(shape, generator=g).to(torch.bfloat16)
    return out


def test_bfl_names_invert_diffusers_converter(tiny_flux_pipeline: Path, tmp_path: Path) -> None:
    sd = _flux1_width_state_dict(tiny_flux_pipeline)
    src = tmp_path / "wide.safetensors"
    save_file(sd, str(src))
    with Checkpoint(src) as ckpt:
        plan = build_plan(ckpt, file_quant_type("BF16"), "auto")  # width 3072 -> BFL names
        bfl = {t.name: torch.from_numpy(load(ckpt, t)) for t in plan}
    assert "double_blocks.0.img_attn.qkv.weight" in bfl
    assert bfl["single_blocks.0.linear1.weight"].shape[0] == 3 * 3072 + 12288
    assert not any(k.startswith("transformer_blocks.") for k in bfl)
    back = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert torch.equal(back[k], v.float()), k


def test_bfl_source_with_prefix_splits_back_to_diffusers(
    tiny_flux_pipeline: Path, tmp_path: Path
) -> None:
    """A BFL-keyed file (``model.diffusion_model.`` prefix) written with diffusers names equals
    what diffusers' converter makes of it."""
    sd = _flux1_width_state_dict(tiny_flux_pipeline)
    wide = tmp_path / "wide.safetensors"
    save_file(sd, str(wide))
    with Checkpoint(wide) as ckpt:
        plan = build_plan(ckpt, file_quant_type("BF16"), "bfl")
        bfl = {
            "model.diffusion_model." + t.name: torch.from_numpy(load(ckpt, t)).to(torch.bfloat16)
            for t in plan
        }
    bfl_file = tmp_path / "bfl.safetensors"
    save_file(bfl, str(bfl_file))
    with Checkpoint(bfl_file) as ckpt:
        plan = build_plan(ckpt, file_quant_type("BF16"), "diffusers")
        again = {t.name: load(ckpt, t) for t in plan}
    assert set(again) == set(sd)
    for k, v in sd.items():
        assert np.array_equal(again[k], v.float().numpy()), k


def test_narrow_bfl_file_converts_to_loadable_diffusers_gguf(
    tiny_flux_pipeline: Path, tmp_path: Path, flux_inputs: dict
) -> None:
    """Width-256 BFL checkpoint -> auto picks diffusers names -> diffusers loads it."""
    from diffusers import FluxTransformer2DModel, GGUFQuantizationConfig

    src = tiny_flux_pipeline / "transformer"
    with Checkpoint(src) as ckpt:
        plan = build_plan(ckpt, file_quant_type("F16"), "bfl")
        bfl = {"model.diffusion_model." + t.name: torch.from_numpy(load(ckpt, t)) for t in plan}
    bfl_file = tmp_path / "narrow-bfl.safetensors"
    save_file(bfl, str(bfl_file))
    out = tmp_path / "narrow.gguf"
    s = quantize_checkpoint(bfl_file, out, "Q8_0")
    assert s.key_names == "diffusers"
    ref = FluxTransformer2DModel.from_pretrained(tiny_flux_pipeline, subfolder="transformer")
    model = FluxTransformer2DModel.from_single_file(
        str(out),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(tiny_flux_pipeline),
        subfolder="transformer",
    )
    with torch.no_grad():
        a = ref(**flux_inputs).sample
        b = model(**flux_inputs).sample
    assert 0 < float((a - b).norm() / a.norm()) < 0.01


def test_bfl_gguf_names_and_qkv_mix(tiny_flux_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "bfl.gguf"
    s = quantize_checkpoint(tiny_flux_pipeline / "transformer", out, "Q4_K_M", key_names="bfl")
    assert s.key_names == "bfl"
    types = {t.name: t.tensor_type.name for t in GGUFReader(out).tensors}
    assert types["double_blocks.0.img_attn.qkv.weight"] == "Q5_K"
    assert types["double_blocks.0.txt_attn.qkv.weight"] == "Q5_K"
    assert types["single_blocks.0.linear1.weight"] == "Q4_K"
    assert types["img_in.weight"] == "F16"
    assert types["final_layer.adaLN_modulation.1.weight"] == "F16"
    assert types["double_blocks.0.img_attn.norm.query_norm.scale"] == "F32"
    # 1 double block: img/txt mod, qkv, proj, mlp.0, mlp.2 = 10 weights; single: 3
    assert s.tensor_counts["Q5_K"] == 2 and s.tensor_counts["Q4_K"] == 11


def test_swapped_final_modulation(tiny_flux_pipeline: Path) -> None:
    with Checkpoint(tiny_flux_pipeline / "transformer") as ckpt:
        plan = {t.name: t for t in build_plan(ckpt, file_quant_type("F16"), "bfl")}
        ada = load(ckpt, plan["final_layer.adaLN_modulation.1.weight"])
        orig = ckpt.load("norm_out.linear.weight")
    half = orig.shape[0] // 2
    assert np.array_equal(ada[:half], orig[half:]) and np.array_equal(ada[half:], orig[:half])


@pytest.mark.parametrize(
    ("name", "bfl"),
    [
        ("transformer_blocks.4.attn.to_k.weight", "double_blocks.4.img_attn.qkv.weight"),
        ("transformer_blocks.0.attn.add_v_proj.bias", "double_blocks.0.txt_attn.qkv.bias"),
        ("single_transformer_blocks.2.proj_mlp.weight", "single_blocks.2.linear1.weight"),
        ("single_transformer_blocks.2.attn.norm_k.weight", "single_blocks.2.norm.key_norm.scale"),
        ("time_text_embed.guidance_embedder.linear_2.bias", "guidance_in.out_layer.bias"),
        ("norm_out.linear.weight", "final_layer.adaLN_modulation.1.weight"),
        ("not.a.flux.key", None),
    ],
)
def test_single_name_lookup(name: str, bfl: str | None) -> None:
    assert diffusers_to_bfl_name(name) == bfl


def test_unmapped_key_is_rejected(tiny_flux_pipeline: Path, tmp_path: Path) -> None:
    sd = load_file(tiny_flux_pipeline / "transformer" / "diffusion_pytorch_model.safetensors")
    sd["extra.lora_A.weight"] = torch.zeros(4, 4)
    src = tmp_path / "extra.safetensors"
    save_file(sd, str(src))
    with pytest.raises(ConversionError, match=r"extra\.lora_A\.weight"):
        quantize_checkpoint(src, tmp_path / "o.gguf", "Q8_0", key_names="bfl")
    assert not (tmp_path / "o.gguf").exists()
