"""SD3.5, the second family: its registry entry, real architecture, GGUF layout and a tiny sweep.

The conformance test (test_conformance.py) checks what every family owes the harness; these
check what is SD3's own: the published SD3.5 Large figures on the meta device, files in
Stability AI's names that diffusers' own SD3 converter turns back into the model's weights
(including SD3.5 Medium's second attention and the swapped halves of the last block), the
community recipe's choice of quantized tensors, and `configs/tiny-sd3.yaml` swept on this CPU
with fidelity ordered by bits per weight.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.families import family_for_architecture, family_for_pipeline, get_family

SD3 = get_family("sd3")
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny-sd3.yaml"


def test_registry_finds_sd3_by_name_pipeline_and_architecture() -> None:
    assert SD3.name == "sd3" and SD3.denoiser_class == "SD3Transformer2DModel"
    assert family_for_pipeline("StableDiffusion3Pipeline") is SD3
    assert family_for_architecture("sd3") is SD3
    assert SD3.gguf.original_scheme == "sai"


def test_sd35_large_on_the_meta_device_has_the_published_shape() -> None:
    modules = SD3.meta_components(SD3.preset("sd3.5-large"))
    transformer = modules["transformer"]
    assert len(transformer.transformer_blocks) == 38
    assert transformer.config.num_attention_heads * transformer.config.attention_head_dim == 2432
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in modules.items()}
    for component, published in SD3.published_parameters.items():
        assert published.matches(counts[component]), (component, counts[component])
    # the pipeline's own shape rules: pooled = both CLIP projections, sequence = T5's width
    cfg = transformer.config
    clip_l, clip_g = modules["text_encoder"].config, modules["text_encoder_2"].config
    assert cfg.pooled_projection_dim == clip_l.projection_dim + clip_g.projection_dim
    assert cfg.joint_attention_dim == modules["text_encoder_3"].config.d_model


@pytest.fixture(scope="module", params=[(), (0, 1)], ids=["large-shaped", "medium-shaped"])
def small_transformer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Any, tuple[int, ...]]:
    """A random-weight SD3 transformer saved as a diffusers folder (config + safetensors),
    made once per shape for both quant types; `dual` gives it SD3.5 Medium's second attention."""
    import torch
    from diffusers import SD3Transformer2DModel

    from bench.models.synthetic import fill_random_weights

    dual = request.param
    config = {**SD3.preset("tiny").transformer, "num_layers": 3, "dual_attention_layers": dual}
    model = SD3Transformer2DModel(**config)
    fill_random_weights(model, 0, "transformer", torch.float32)
    folder = tmp_path_factory.mktemp("sd3-base")
    model.save_pretrained(folder / "transformer")
    return folder, model, dual


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K"])
def test_gguf_file_in_sai_names_loads_back_through_from_single_file(
    tmp_path: Path, quant: str, small_transformer: tuple[Path, Any, tuple[int, ...]]
) -> None:
    import torch
    from diffusers import GGUFQuantizationConfig, SD3Transformer2DModel
    from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

    from bench.families.gguf import inspect_gguf, quantize_checkpoint

    base, reference, dual = small_transformer
    out = tmp_path / f"sd3-{quant}.gguf"
    summary = quantize_checkpoint(base / "transformer", out, quant, family="sd3")
    info = inspect_gguf(out)
    assert info.metadata["general.architecture"] == "sd3"
    assert summary.key_names == "sai"
    names = set(info.tensor_types)
    assert "joint_blocks.2.context_block.adaLN_modulation.1.weight" in names
    assert "joint_blocks.2.context_block.mlp.fc1.weight" not in names  # context pre-only
    assert not any(n.startswith("transformer_blocks.") for n in names)
    assert any(".attn2.qkv." in n for n in names) == bool(dual)
    # city96's recipe: only 2-D weights inside the joint blocks are quantized
    for name, qtype in info.tensor_types.items():
        assert (qtype == quant) == (
            name.startswith("joint_blocks.") and name.endswith("weight") and ".ln_" not in name
        ), (name, qtype)

    loaded = SD3Transformer2DModel.from_single_file(
        str(out),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(base),
        subfolder="transformer",
        torch_dtype=torch.float32,
    )
    got, want = loaded.state_dict(), reference.state_dict()
    assert set(got) == set(want)
    # every tensor comes back where it was: quantization error only (a tensor put in the
    # wrong place, or halves left swapped, would be off by its whole size)
    tolerance = {"Q8_0": 0.02, "Q4_K": 0.2}[quant]
    for key, expected in want.items():
        value = got[key]
        if hasattr(value, "quant_type"):
            value = dequantize_gguf_tensor(value)
        value = value.float().reshape(expected.shape)
        scale = expected.abs().max().item() or 1.0
        error = (value - expected.float()).abs().max().item() / scale
        assert error < tolerance, (key, error)


@pytest.fixture(scope="module")
def tiny_sd3_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/tiny-sd3.yaml's variants and offload modes, at the smallest work that still
    orders them: one prompt, one repeat, 64 px, one step and 16 T5 tokens (Q8_0 ~52 dB and
    Q4_K ~31 dB from full precision there, over 5 seeds checked directly; the size is not
    under test, the sweep of every variant is)."""
    from bench.runner.executor import run_config

    folder = tmp_path_factory.mktemp("tiny-sd3")
    config = yaml.safe_load(CONFIG.read_text())
    config.update(
        prompts=[{"id": "city", "text": "a futuristic city at sunset with neon lights"}],
        repeats=1,
        height=64,
        width=64,
        steps=1,
        max_sequence_length=16,
        warmup=0,
    )
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_config(path, folder / "results")


@pytest.mark.slow
def test_tiny_sd3_sweeps_and_fidelity_follows_bits_per_weight(tiny_sd3_run: Path) -> None:
    from bench.results import cell_records, read_records
    from bench.scoring import SCORES_SUMMARY, score_run

    config = yaml.safe_load(CONFIG.read_text())
    cells = cell_records(read_records(tiny_sd3_run))
    variants = [v["name"] for v in config["variants"]]
    seen = {(r["variant"], r["offload"]) for r in cells.values()}
    assert seen == {(v, o) for v in variants for o in ("none", "model")}  # none dropped
    status = {(r["variant"], r["offload"]): r["status"] for r in cells.values()}
    for variant in variants:
        assert status[(variant, "none")] == "ok", (variant, status)
    manifest = json.loads((tiny_sd3_run / "manifest.json").read_text())
    assert manifest["config"]["model"]["family"] == "sd3"

    score_run(tiny_sd3_run, ["psnr"], progress=False)
    rows = json.loads((tiny_sd3_run / SCORES_SUMMARY).read_text())["cells"]
    psnr = {r["variant"]: r for r in rows if r["metric"] == "psnr" and r["offload"] == "none"}
    assert psnr["full-fp32"]["status"] == "reference"
    assert psnr["Q8_0"]["mean"] is not None and psnr["Q4_K"]["mean"] is not None
    assert psnr["Q8_0"]["mean"] > psnr["Q4_K"]["mean"], (psnr["Q8_0"], psnr["Q4_K"])


def test_bench_size_sizes_sd35_large_from_its_configs() -> None:
    """`bench size --model sd3.5-large`: bytes from the built modules, and the community
    recipe's K-quant rule at SD3.5 Large's width (2432 = 9.5 × 256: rows of that length fall
    back to F16, so only the MLPs' 9728-wide down projections take a K type)."""
    from bench.families.sizing import full_variant, gguf_variant, rule_types
    from bench.sizing.sources import builtin_base

    base = builtin_base("sd3.5-large")
    transformer = base.modules["transformer"]
    weights = sum(p.numel() for p in transformer.parameters())
    buffers = sum(b.numel() for b in transformer.buffers())  # the position table
    full = full_variant(base).pipe.components["transformer"]
    assert full.bytes == 2 * (weights + buffers)  # bf16, computed from the config

    sized = {
        q: gguf_variant(base, quant=q).pipe.components["transformer"].bytes
        for q in ("Q8_0", "Q4_0", "Q4_K_S")
    }
    assert sized["Q4_0"] < sized["Q8_0"] < sized["Q4_K_S"] < full.bytes
    k_quantized = {n for n, t in rule_types(transformer, "Q4_K_S").items() if t == "Q4_K"}
    assert k_quantized
    assert all(n.endswith(("ff.net.2.weight", "ff_context.net.2.weight")) for n in k_quantized)


@pytest.mark.parametrize("name", ["tiny-sd3.yaml", "sd3.5-large-synthetic.yaml"])
def test_sd3_configs_validate_against_the_family(name: str) -> None:
    from bench.config import load_config

    config, _ = load_config(CONFIG.parent / name)
    assert config.model.family == "sd3"
    assert config.model.preset in SD3.presets
    kinds = {v.kind for v in config.variants}
    assert {"full", "gguf"} < kinds  # and at least one backend besides them


def test_real_weights_config_names_city96_files_and_the_model_cards_settings() -> None:
    """configs/sd3.5-large-gguf.yaml: the real base, city96's files (each file's type is the
    variant's), every offload mode, and the model card's call (28 steps, guidance 3.5, 1024²)."""
    from bench.config import load_config

    config, _ = load_config(CONFIG.parent / "sd3.5-large-gguf.yaml")
    assert config.model.family == "sd3" and config.model.source == "pretrained"
    assert config.model.path == "stabilityai/stable-diffusion-3.5-large"
    assert (config.height, config.width, config.steps, config.guidance) == (1024, 1024, 28, 3.5)
    assert [o.mode for o in config.offload_specs] == ["none", "model", "sequential"]
    full, *ggufs = config.variants
    assert (full.kind, full.dtype) == ("full", "bfloat16")
    assert ggufs and all(v.kind == "gguf" and v.compute_dtype == "bfloat16" for v in ggufs)
    prefix = "https://huggingface.co/city96/stable-diffusion-3.5-large-gguf/blob/main/"
    for v in ggufs:
        assert v.file == f"{prefix}sd3.5_large-{v.quant}.gguf", v.name
