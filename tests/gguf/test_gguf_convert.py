"""The FLUX checkpoint converter: loadable by diffusers, tensor selection, inputs, atomic output."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from safetensors.torch import load_file, save_file

from bench.families.gguf import quantize_checkpoint
from bench.gguf import convert as convert_mod
from bench.gguf.errors import ConversionError
from bench.gguf.qtypes import file_quant_type, supported_quant_types
from tests.gguf.flux_names import choose_tensor_type


def _state_dict(pipe: Path) -> dict[str, torch.Tensor]:
    return load_file(pipe / "transformer" / "diffusion_pytorch_model.safetensors")


def _types(path: Path) -> dict[str, T]:
    return {t.name: T(t.tensor_type) for t in GGUFReader(path).tensors}


def _load_gguf_model(path: Path, pipe: Path) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel, GGUFQuantizationConfig

    return FluxTransformer2DModel.from_single_file(
        str(path),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(pipe),
        subfolder="transformer",
    )


@pytest.mark.parametrize(("qtype", "max_rel"), [("Q8_0", 0.01), ("Q6_K", 0.03), ("Q4_K", 0.15)])
def test_output_loads_in_diffusers_and_is_close(
    tiny_flux_pipeline: Path, tmp_path: Path, qtype: str, max_rel: float, flux_inputs: dict
) -> None:
    from diffusers import FluxTransformer2DModel

    out = tmp_path / f"tiny-{qtype}.gguf"
    summary = quantize_checkpoint(tiny_flux_pipeline / "transformer", out, qtype)
    assert summary.out == out and out.is_file()
    assert summary.key_names == "diffusers"  # width 256: diffusers names (auto)
    assert summary.tensor_counts[qtype] == 20  # 2-D block weights of 1 double + 1 single block
    ref_model = FluxTransformer2DModel.from_pretrained(tiny_flux_pipeline, subfolder="transformer")
    model = _load_gguf_model(out, tiny_flux_pipeline)
    with torch.no_grad():
        ref = ref_model(**flux_inputs).sample
        got = model(**flux_inputs).sample
    rel = float((got - ref).norm() / ref.norm())
    print(f"{qtype}: relative output error {rel:.2e}")
    assert 0 < rel < max_rel


def test_metadata_and_tensor_selection(tiny_flux_pipeline: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.gguf"
    s = quantize_checkpoint(tiny_flux_pipeline / "transformer", out, "Q4_K_M")
    r = GGUFReader(out)
    assert r.fields["general.architecture"].contents() == "flux"
    assert r.fields["general.quantization_version"].contents() == 2
    assert r.fields["general.file_type"].contents() == 15
    types = _types(out)
    sd = _state_dict(tiny_flux_pipeline)
    assert set(types) == set(sd)
    for name, t in types.items():
        shape = tuple(sd[name].shape)
        if len(shape) == 1 or sd[name].numel() <= 1024:
            assert t == T.F32, name
        elif not name.startswith(("transformer_blocks.", "single_transformer_blocks.")):
            assert t == T.F16, name  # fp32 source: embedders / final layer kept as F16
        elif name.startswith("transformer_blocks.") and ".attn.to_" in name and "out" not in name:
            assert t == T.Q5_K, name  # _M: qkv one level up
        elif ".attn.add_" in name and "proj" in name and "to_add_out" not in name:
            assert t == T.Q5_K, name
        else:
            assert t == T.Q4_K, name
    assert s.tensor_counts == Counter(t.name for t in types.values())
    assert s.parameters == sum(v.numel() for v in sd.values())
    assert s.file_bytes == out.stat().st_size
    assert 4.5 < s.bits_per_weight < 16


def test_bf16_source_keeps_bf16_for_unquantized(tiny_flux_pipeline: Path, tmp_path: Path) -> None:
    sd = {k: v.to(torch.bfloat16) for k, v in _state_dict(tiny_flux_pipeline).items()}
    src = tmp_path / "bf16.safetensors"
    save_file(sd, str(src))
    out = tmp_path / "bf16-Q8_0.gguf"
    quantize_checkpoint(src, out, "Q8_0")
    types = _types(out)
    assert types["x_embedder.weight"] == T.BF16
    assert types["proj_out.weight"] == T.BF16
    assert types["transformer_blocks.0.ff.net.0.proj.weight"] == T.Q8_0
    assert types["x_embedder.bias"] == T.F32
    r = GGUFReader(out)
    assert r.fields["general.file_type"].contents() == 7


def test_type_rules() -> None:
    q4 = file_quant_type("Q4_K")
    assert choose_tensor_type("single_blocks.0.linear1.weight", (21504, 3072), "BF16", q4) == T.Q4_K
    assert choose_tensor_type("single_blocks.0.linear1.weight", (64, 320), "BF16", q4) == T.F16
    assert choose_tensor_type("img_in.weight", (3072, 64), "BF16", q4) == T.BF16
    assert choose_tensor_type("final_layer.linear.weight", (64, 3072), "F32", q4) == T.F16
    assert choose_tensor_type("double_blocks.0.img_attn.qkv.bias", (9216,), "BF16", q4) == T.F32
    assert (
        choose_tensor_type("double_blocks.0.img_attn.norm.key_norm.scale", (128,), "BF16", q4)
        == T.F32
    )
    m = file_quant_type("Q5_K_M")
    assert (
        choose_tensor_type("double_blocks.3.txt_attn.qkv.weight", (9216, 3072), "BF16", m) == T.Q6_K
    )
    assert choose_tensor_type("single_blocks.3.linear1.weight", (21504, 3072), "BF16", m) == T.Q5_K
    f16 = file_quant_type("F16")
    assert choose_tensor_type("img_in.weight", (3072, 64), "BF16", f16) == T.F16


def test_supported_types() -> None:
    types = supported_quant_types()
    for t in (
        "F16",
        "BF16",
        "Q8_0",
        "Q6_K",
        "Q5_K",
        "Q4_K",
        "Q4_K_S",
        "Q4_K_M",
        "Q5_K_S",
        "Q5_K_M",
    ):
        assert t in types
    with pytest.raises(ValueError, match="expected one of"):
        file_quant_type("Q3_K")


def test_sharded_folder_gives_same_file_as_single(tiny_flux_pipeline: Path, tmp_path: Path) -> None:
    sd = _state_dict(tiny_flux_pipeline)
    folder = tmp_path / "sharded"
    folder.mkdir()
    keys = list(sd)
    half = len(keys) // 2
    shards = {"a.safetensors": keys[:half], "b.safetensors": keys[half:]}
    weight_map = {}
    for fname, ks in shards.items():
        save_file({k: sd[k] for k in ks}, str(folder / fname))
        weight_map.update(dict.fromkeys(ks, fname))
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    (folder / "config.json").write_text(
        (tiny_flux_pipeline / "transformer" / "config.json").read_text()
    )
    a = quantize_checkpoint(folder, tmp_path / "a.gguf", "Q6_K")
    b = quantize_checkpoint(tiny_flux_pipeline / "transformer", tmp_path / "b.gguf", "Q6_K")
    ra, rb = GGUFReader(a.out), GGUFReader(b.out)
    da = {t.name: np.asarray(t.data).tobytes() for t in ra.tensors}
    db = {t.name: np.asarray(t.data).tobytes() for t in rb.tensors}
    assert da == db


def test_bad_inputs_raise_conversion_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="no such file"):
        quantize_checkpoint(tmp_path / "missing", tmp_path / "o.gguf", "Q8_0")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    with pytest.raises(ConversionError, match=r"junk\.safetensors"):
        quantize_checkpoint(junk, tmp_path / "o.gguf", "Q8_0")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConversionError, match=r"no \*\.safetensors"):
        quantize_checkpoint(empty, tmp_path / "o.gguf", "Q8_0")
    assert not list(tmp_path.glob("*.gguf"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_failure_leaves_no_output(
    tiny_flux_pipeline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """The source shrinks after planning (a real failure inside the workers): the error is
    the reader's, and neither the output nor its temporary file is left."""
    src = tmp_path / "src.safetensors"
    src.write_bytes(
        (tiny_flux_pipeline / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    )
    real = convert_mod.plan_chunks

    def then_truncate(*args, **kwargs):  # type: ignore[no-untyped-def]
        chunks = real(*args, **kwargs)
        with src.open("r+b") as fh:
            fh.truncate(src.stat().st_size // 2)
        return chunks

    monkeypatch.setattr(convert_mod, "plan_chunks", then_truncate)
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="truncated data"):
        quantize_checkpoint(src, out / "x.gguf", "Q8_0", jobs=jobs)
    assert list(out.iterdir()) == []


def test_progress_bar_runs(tiny_flux_pipeline: Path, tmp_path: Path) -> None:
    s = quantize_checkpoint(
        tiny_flux_pipeline / "transformer", tmp_path / "p.gguf", "F16", progress=True
    )
    assert s.tensor_counts == {"F32": 36, "F16": 30}
