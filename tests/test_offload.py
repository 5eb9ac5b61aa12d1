"""bench.offload: labels and specs round-trip, and the mode facts agree with what diffusers does."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import torch

from bench import offload
from bench.errors import UserInputError
from bench.offload import (
    KINDS,
    MODES,
    NO_ACCELERATOR,
    OffloadMode,
    OffloadSpec,
    OffloadUnavailable,
    apply_offload,
    one_of_each_kind,
    parse_offload,
)


def every_spec() -> list[OffloadSpec]:
    """One spec of every mode, and of every group setting (level, blocks, stream)."""
    specs = [OffloadSpec(mode=m) for m in MODES if not MODES[m].settings]
    for mode in (m for m in MODES if MODES[m].settings):
        for stream in (False, True):
            specs.append(OffloadSpec(mode=mode, level="leaf", use_stream=stream))
            for blocks in (1, 2, 17):
                settings = {"blocks_per_group": blocks, "use_stream": stream}
                specs.append(OffloadSpec(mode=mode, level="block", **settings))
    return specs


def test_every_mode_is_in_the_round_trip() -> None:
    assert {s.mode for s in every_spec()} == set(get_args(OffloadMode)) == set(MODES)


@pytest.mark.parametrize("spec", every_spec(), ids=lambda s: s.label)
def test_label_parses_back_to_its_spec(spec: OffloadSpec) -> None:
    assert parse_offload(spec.label) == spec
    assert parse_offload(spec.label).label == spec.label


def test_labels_are_distinct() -> None:
    labels = [s.label for s in every_spec()]
    assert len(set(labels)) == len(labels)


def test_group_block_without_a_count_is_one_block() -> None:
    assert parse_offload("group-block").label == "group-block1"
    assert parse_offload("group-block-stream").label == "group-block1-stream"


@pytest.mark.parametrize("label", ["", "group", "Model", "group-leaf2", "seq", "group-blockx"])
def test_unknown_label_is_user_input_error_naming_it(label: str) -> None:
    with pytest.raises(UserInputError, match="expected none, model, sequential") as info:
        parse_offload(label)
    assert repr(label) in str(info.value)


def test_settings_a_mode_ignores_are_refused() -> None:
    with pytest.raises(ValueError, match="use_stream: not used with mode 'model'"):
        OffloadSpec(mode="model", use_stream=True)
    with pytest.raises(ValueError, match="blocks_per_group: not used with level leaf"):
        OffloadSpec(mode="group", blocks_per_group=2)


def test_every_spec_has_a_kind_and_the_defaults_cover_every_kind_fastest_first() -> None:
    assert {s.kind for s in every_spec()} == set(KINDS.values())
    defaults = [parse_offload(label) for label in one_of_each_kind()]
    assert [d.kind for d in defaults] == sorted(KINDS.values(), key=lambda k: k.speed_rank)
    assert [d.kind.speed_rank for d in defaults] == sorted({k.speed_rank for k in KINDS.values()})


def test_only_no_offload_runs_without_an_accelerator() -> None:
    assert {m for m in MODES if MODES[m].needs_accelerator} == {"model", "sequential", "group"}


def test_known_failures_are_per_weights_format() -> None:
    sequential = parse_offload("sequential")
    assert sequential.fails_with("GGUF Q8_0") == offload.SEQUENTIAL_GGUF_NOTE
    assert sequential.fails_with("bfloat16") is None
    assert all(s.fails_with("GGUF Q4_K") is None for s in every_spec() if s.mode != "sequential")


def test_each_mode_names_a_diffusers_pipeline_method() -> None:
    from diffusers import DiffusionPipeline

    for mode in MODES.values():
        assert callable(getattr(DiffusionPipeline, mode.call)), mode.call


@pytest.fixture(scope="module")
def pipe(tiny_pipeline: Path) -> Any:
    from bench.models.loading import from_pretrained

    return from_pretrained(str(tiny_pipeline), "float32")


# With an accelerator present, diffusers' model and sequential offload find it by themselves.
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host without an accelerator")
@pytest.mark.parametrize("spec", [parse_offload(label) for label in one_of_each_kind()])
def test_on_the_host_the_modes_that_need_an_accelerator_fail(pipe: Any, spec: OffloadSpec) -> None:
    cpu = torch.device("cpu")
    if not spec.needs_accelerator:
        apply_offload(pipe, spec, cpu)
        assert {p.device for p in pipe.transformer.parameters()} == {cpu}
        return
    with pytest.raises(RuntimeError) as info:
        apply_offload(pipe, spec, cpu)
    if MODES[spec.mode].settings:  # group: diffusers would accept cpu and move nothing
        assert info.type is OffloadUnavailable
        assert "needs an accelerator" in str(info.value)
    else:  # diffusers' own refusal, raised by the very method the mode names
        assert info.type is RuntimeError
        assert f"`{MODES[spec.mode].call}` {NO_ACCELERATOR}" in str(info.value)
