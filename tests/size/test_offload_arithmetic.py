"""What stays on the device under each offload mode, on hand-made component sets."""

from __future__ import annotations

from bench.sizing.components import Component, PipelineComponents
from bench.sizing.predict import parse_offload, predict, resident
from bench.sizing.terms import ALLOCATOR_FACTOR, CUDA_CONTEXT_BYTES, Scenario

MB = 1 << 20


def _component(name: str, nbytes: int, leaf: int, block: int, outside: int, n: int, **cfg):
    return Component(
        name=name,
        class_name="X",
        dtype="bfloat16",
        parameters=nbytes // 2,
        bytes=nbytes,
        leaf_bytes=leaf,
        leaf_name=f"{name}.big",
        block_bytes=block,
        outside_blocks_bytes=outside,
        n_blocks=n,
        config=cfg,
    )


def _pipe(dequant: int = 0) -> PipelineComponents:
    transformer = _component(
        "transformer", 1000 * MB, 10 * MB, 40 * MB, 200 * MB, 20,
        num_attention_heads=2, attention_head_dim=64,
    )  # fmt: skip
    if dequant:
        from dataclasses import replace

        transformer = replace(transformer, dequant_bytes=dequant, dequant_tensor="w (Q8_0)")
    comps = {
        "text_encoder": _component("text_encoder", 100 * MB, 5 * MB, 0, 100 * MB, 0,
                                   max_position_embeddings=77, hidden_size=64),
        "text_encoder_2": _component("text_encoder_2", 600 * MB, 30 * MB, 0, 600 * MB, 0,
                                     num_heads=2, d_ff=128, d_model=64),
        "transformer": transformer,
        "vae": _component("vae", 50 * MB, 2 * MB, 8 * MB, 10 * MB, 5,
                          block_out_channels=[8, 16, 16, 16]),
    }  # fmt: skip
    return PipelineComponents(
        label="hand-made",
        components=comps,
        offload_order=("text_encoder", "text_encoder_2", "transformer", "vae"),
        transformer_format="GGUF Q8_0" if dequant else "bfloat16",
    )


def _weights(pipe: PipelineComponents, running: str, label: str) -> int:
    return sum(nbytes for _, nbytes, _ in resident(pipe, running, parse_offload(label)))


def test_none_keeps_every_component() -> None:
    pipe = _pipe()
    for running in pipe.offload_order:
        assert _weights(pipe, running, "none") == 1750 * MB


def test_model_offload_keeps_only_the_running_component() -> None:
    pipe = _pipe()
    assert _weights(pipe, "transformer", "model") == 1000 * MB
    assert _weights(pipe, "text_encoder_2", "model") == 600 * MB
    assert _weights(pipe, "vae", "model") == 50 * MB


def test_sequential_and_leaf_groups_keep_the_largest_leaf() -> None:
    pipe = _pipe()
    assert _weights(pipe, "transformer", "sequential") == 10 * MB
    assert _weights(pipe, "transformer", "group-leaf") == 10 * MB
    assert _weights(pipe, "transformer", "group-leaf-stream") == 20 * MB  # prefetch: two


def test_block_groups_keep_k_blocks_and_what_is_outside_them() -> None:
    pipe = _pipe()
    assert _weights(pipe, "transformer", "group-block1") == 200 * MB + 40 * MB
    assert _weights(pipe, "transformer", "group-block3") == 200 * MB + 3 * 40 * MB
    assert _weights(pipe, "transformer", "group-block2-stream") == 200 * MB + 2 * 2 * 40 * MB
    # no block list: the whole model moves at once, never more than the model
    assert _weights(pipe, "text_encoder_2", "group-block1") == 600 * MB
    assert _weights(pipe, "transformer", "group-block40") == 1000 * MB


def test_prediction_is_the_largest_phase_and_its_terms_sum_to_it() -> None:
    pipe = _pipe(dequant=3 * MB)
    pred = predict(pipe, Scenario(parse_offload("model"), 256, 256, 1, 64))
    assert pred.peak_phase == "transformer"
    assert pred.total_bytes == max(p.bytes for p in pred.phases)
    assert pred.total_bytes == sum(t.bytes for t in pred.terms)
    assert pred.weights_bytes == 1000 * MB
    assert pred.term("GGUF dequantisation scratch").bytes == 3 * MB
    assert pred.term("CUDA context").bytes == CUDA_CONTEXT_BYTES
    act = pred.term("transformer activations").bytes
    assert pred.term("allocator overhead").bytes == int((ALLOCATOR_FACTOR - 1) * act)
    assert pred.reserved_bytes == pred.total_bytes - CUDA_CONTEXT_BYTES


def test_sequential_offload_of_a_gguf_transformer_carries_the_known_failure() -> None:
    pred = predict(_pipe(dequant=MB), Scenario(parse_offload("sequential")))
    assert any("14691" in note for note in pred.notes)
    assert not predict(_pipe(), Scenario(parse_offload("sequential"))).notes
