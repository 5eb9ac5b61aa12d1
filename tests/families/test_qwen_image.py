"""Qwen-Image, a family beside FLUX: its tokenizer, GGUF layout, published sizes and a whole sweep.

The conformance test (tests/families/test_conformance.py) runs the checks every family passes;
these are the ones that need Qwen-Image's own knowledge: the chat template's 34 dropped tokens,
the community GGUF layout (diffusers names, ``general.architecture = "qwen_image"``, only block
weights quantized) loaded by diffusers' ``from_single_file``, the real architecture's parameter
counts, and the tiny preset swept end to end on a CPU with its fidelity ordered by bit width.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bench.families import family_for_architecture, family_for_pipeline, get_family

QWEN = get_family("qwen_image")
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny-qwen-image.yaml"


def test_registered_under_its_pipeline_and_gguf_architecture() -> None:
    assert family_for_pipeline("QwenImagePipeline") is QWEN
    assert family_for_architecture("qwen_image") is QWEN
    assert QWEN.gguf.architecture == "qwen_image"
    assert QWEN.gguf.original_scheme == "diffusers"


def test_local_tokenizer_splits_the_template_system_message_as_the_pipeline_drops_it(
    tmp_path: Path,
) -> None:
    """QwenImagePipeline drops prompt_template_encode_start_idx hidden states: exactly the
    system message's tokens, so the prompt's own tokens are what reaches the transformer."""
    from bench.models.tokenizers import build_qwen2_tokenizer

    tokenizer = build_qwen2_tokenizer()
    template = _pipeline_template()
    system, _ = template.split("{}")
    drop = _pipeline_drop_index()
    assert len(tokenizer(system).input_ids) == drop
    prompt = "a photo of a zebra, 123 Ünïcode"
    ids = tokenizer(template.format(prompt)).input_ids
    assert tokenizer.decode(ids[drop:]).startswith(prompt)
    tokenizer.save_pretrained(tmp_path)
    reloaded = type(tokenizer).from_pretrained(tmp_path)
    assert reloaded(template.format(prompt)).input_ids == ids
    assert reloaded.pad_token == "<|endoftext|>"


def _pipeline_template() -> str:
    import inspect

    from diffusers import QwenImagePipeline

    source = inspect.getsource(QwenImagePipeline.__init__)
    line = next(s for s in source.splitlines() if "self.prompt_template_encode =" in s)
    return str(eval(line.split("=", 1)[1].strip()))  # the literal diffusers assigns


def _pipeline_drop_index() -> int:
    import inspect

    from diffusers import QwenImagePipeline

    source = inspect.getsource(QwenImagePipeline.__init__)
    line = next(s for s in source.splitlines() if "self.prompt_template_encode_start_idx" in s)
    return int(line.split("=", 1)[1])


def test_real_architecture_parameter_counts_are_the_published_ones() -> None:
    modules = QWEN.meta_components(QWEN.preset("qwen-image"))
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    for component, published in QWEN.published_parameters.items():
        assert published.matches(counts[component]), (component, counts[component])
    transformer = modules["transformer"]
    assert transformer.config.num_layers == len(transformer.transformer_blocks) == 60
    assert transformer.inner_dim == 3072


def test_tiny_preset_widths_admit_the_k_quants() -> None:
    from gguf import GGMLQuantizationType as T

    from bench.gguf.plan import choose_tensor_type
    from bench.gguf.qtypes import file_quant_type

    transformer = QWEN.meta_components(QWEN.preset("tiny"))["transformer"]
    ft = file_quant_type("Q4_K")
    for name, p in transformer.named_parameters():
        qtype = choose_tensor_type(name, tuple(p.shape), "F32", ft, QWEN.gguf)
        if name.startswith("transformer_blocks.") and p.ndim == 2:
            assert qtype in (T.Q4_K, T.Q5_K), name  # no F16 fallback for a row width
        else:
            assert qtype in (T.F32, T.F16), name


def test_size_prediction_of_the_real_model_grows_with_the_image(tmp_path: Path) -> None:
    from bench.families.sizing import gguf_layout_from_rules, pipeline_components
    from bench.sizing.predict import parse_offload, predict
    from bench.sizing.terms import Scenario

    spec = QWEN.preset("qwen-image")
    modules = QWEN.meta_components(spec)
    full = pipeline_components(modules, QWEN.pipeline_class, "q", spec.dtype, family=QWEN.name)
    layout = gguf_layout_from_rules(modules["transformer"], "Q4_K_S")
    q4 = pipeline_components(
        modules, QWEN.pipeline_class, "q", spec.dtype, layout=layout, family=QWEN.name
    )
    assert q4.components["transformer"].bytes < 0.35 * full.components["transformer"].bytes
    none = parse_offload("none")
    small, big = predict(full, Scenario(none, 512, 512)), predict(full, Scenario(none, 1024, 1024))
    assert big.total_bytes > small.total_bytes > full.bytes
    assert predict(full, Scenario(parse_offload("model"))).total_bytes < small.total_bytes


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K"])
def test_gguf_file_has_the_community_layout_and_loads_through_from_single_file(
    quant: str, tmp_path: Path
) -> None:
    import torch
    from diffusers import GGUFQuantizationConfig, QwenImageTransformer2DModel
    from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

    from bench.families.gguf import inspect_gguf, quantize_checkpoint
    from bench.families.synthetic import ensure_synthetic_pipeline

    base = ensure_synthetic_pipeline("tiny", 0, "qwen_image")
    out = tmp_path / f"qwen-image-{quant}.gguf"
    quantize_checkpoint(base / "transformer", out, quant, family="qwen_image")
    info = inspect_gguf(out)
    reference = QwenImageTransformer2DModel.from_pretrained(base, subfolder="transformer")
    state = reference.state_dict()
    assert info.metadata["general.architecture"] == "qwen_image"
    assert set(info.tensor_types) == set(state)  # diffusers' own names, nothing fused
    for name, qtype in info.tensor_types.items():
        block_weight = name.startswith("transformer_blocks.") and state[name].ndim == 2
        if block_weight:
            assert qtype.startswith(quant[:2]), (name, qtype)
        else:
            assert qtype in ("F32", "F16"), (name, qtype)
    model = QwenImageTransformer2DModel.from_single_file(
        str(out),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(base),
        subfolder="transformer",
    )
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    name = "transformer_blocks.0.attn.to_q.weight"
    dequantized = dequantize_gguf_tensor(loaded[name]).float()
    assert dequantized.shape == state[name].shape
    error = (dequantized - state[name]).norm() / state[name].norm()
    assert 0 < float(error) < (0.01 if quant == "Q8_0" else 0.1)


@pytest.mark.slow
def test_generate_follows_the_pipeline_documentation() -> None:
    """guidance is true_cfg_scale: above 1 the negative prompt " " is used (a different image
    from the unguided one), at 1 the pipeline runs without guidance."""
    import torch
    from diffusers import QwenImagePipeline

    from bench.families.synthetic import ensure_synthetic_pipeline

    pipe = QwenImagePipeline.from_pretrained(ensure_synthetic_pipeline("tiny", 0, "qwen_image"))
    pipe.set_progress_bar_config(disable=True)
    calls: list[int] = []
    pipe.transformer.register_forward_pre_hook(lambda *_: calls.append(1))

    def image(guidance: float) -> np.ndarray:
        frames = QWEN.generate(
            pipe,
            "a cat",
            height=64,
            width=64,
            steps=2,
            guidance=guidance,
            max_sequence_length=32,
            generator=torch.Generator("cpu").manual_seed(0),
        )
        return np.asarray(frames[0])

    plain = image(1.0)
    assert len(calls) == 2  # one pass a step
    guided = image(4.0)
    assert len(calls) == 2 + 4  # conditional and unconditional passes
    assert not np.array_equal(plain, guided)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/tiny-qwen-image.yaml's variants at the smallest work that still orders them:
    offload none, one prompt, one repeat, 64 px, 32 tokens and two steps (Q8_0 ~61 dB and Q4_K
    ~47 dB from full precision there, over 6 seeds checked directly; one step gives NaN)."""
    from bench.api import run, score

    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config.update(
        offload=["none"],
        prompts=[{"id": "city", "text": "a futuristic city at sunset with neon lights"}],
        repeats=1,
        height=64,
        width=64,
        steps=2,
        max_sequence_length=32,
        warmup=0,
        device="cpu",
    )
    folder = tmp_path_factory.mktemp("qwen-sweep")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = run(path, out=folder / "results")
    score(run_dir, ["psnr"])
    return run_dir


def test_tiny_config_is_valid_and_names_the_family() -> None:
    from bench.config import load_config

    config, _ = load_config(CONFIG)
    assert config.model.family == "qwen_image" and config.model.preset == "tiny"
    kinds = {v.kind for v in config.variants}
    assert {"full", "gguf"} < kinds and kinds - {"full", "gguf"}  # a non-GGUF backend too
    assert {getattr(v, "quant", None) for v in config.variants} >= {"Q8_0", "Q4_K"}
    assert {getattr(o, "mode", o) for o in config.offload} == {"none", "model"}


@pytest.mark.slow
def test_tiny_sweep_runs_every_variant_and_q8_0_is_closer_than_q4_k(tiny_sweep: Path) -> None:
    from bench.results import cell_records, read_records

    records = read_records(tiny_sweep)
    cells = cell_records(records)
    variants = [v["name"] for v in yaml.safe_load(CONFIG.read_text())["variants"]]
    assert sorted(c.split("__")[0] for c in cells) == sorted(variants)
    for cell_id, cell in cells.items():
        assert cell["status"] == "ok", (cell_id, cell["error"])
    images = [r for r in records if r.get("kind") == "image"]
    repeats = json.loads((tiny_sweep / "manifest.json").read_text())["config"]["repeats"]
    assert len(images) == repeats * len(variants)
    psnr: dict[str, list[float]] = {}
    for line in (tiny_sweep / "scores.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("metric") == "psnr" and row.get("status") == "ok":
            psnr.setdefault(row["variant"], []).append(row["value"])
    assert set(psnr) >= {"Q8_0", "Q4_K"}
    assert min(psnr["Q8_0"]) > max(psnr["Q4_K"])


def test_bench_size_knows_the_real_model_and_sizes_it_with_the_family_rules() -> None:
    """`bench size --model qwen-image`: its GGUF types follow Qwen-Image's names (no fused
    qkv raised a level in the _M mixes, as FLUX's would be) and every phase uses the family's
    formulas; FLUX-only backend presets (T5) keep the components this pipeline has."""
    from bench.api import size
    from bench.families.sizing import rule_types

    transformer = QWEN.meta_components(QWEN.preset("qwen-image"))["transformer"]
    types = rule_types(transformer, "Q4_K_M")
    assert types["transformer_blocks.0.attn.to_q.weight"] == "Q4_K"
    assert types["img_in.weight"] == "BF16"
    options = size(model="qwen-image", vram="24GiB", quant=["Q4_K_S", "torchao:int8wo"])
    assert {o.variant for o in options} >= {"Q4_K_S"}
    assert any(o.fits for o in options)
    for option in options:
        phases = {p.name for p in option.prediction.phases}
        assert phases == {"transformer", "text_encoder", "vae"}
        encoder = next(p for p in option.prediction.phases if p.name == "text_encoder")
        work = next(t for t in encoder.terms if t.kind == "activations")
        assert "Qwen2.5-VL" in work.explanation


def test_real_weights_config_names_city96_files_and_the_model_cards_settings() -> None:
    """configs/qwen-image-gguf.yaml: the real base, city96's files (each file's type is the
    variant's), every offload mode, and the model card's call: 50 steps, true_cfg_scale 4.0
    (the family's `guidance`), 1328² (its 1:1 size)."""
    from bench.config import load_config

    config, _ = load_config(CONFIG.parent / "qwen-image-gguf.yaml")
    assert config.model.family == "qwen_image" and config.model.source == "pretrained"
    assert config.model.path == "Qwen/Qwen-Image"
    assert (config.height, config.width, config.steps, config.guidance) == (1328, 1328, 50, 4.0)
    assert config.height % QWEN.side_multiple == 0
    assert [o.mode for o in config.offload_specs] == ["none", "model", "sequential"]
    full, *ggufs = config.variants
    assert (full.kind, full.dtype) == ("full", "bfloat16")
    assert ggufs and all(v.kind == "gguf" and v.compute_dtype == "bfloat16" for v in ggufs)
    prefix = "https://huggingface.co/city96/Qwen-Image-gguf/blob/main/"
    for v in ggufs:
        assert v.file == f"{prefix}qwen-image-{v.quant}.gguf", v.name
