"""The weights term of a GGUF transformer equals what diffusers really loads from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.families.sizing import (
    folder_base,
    gguf_layout_from_file,
    gguf_layout_from_rules,
    gguf_variant,
    rule_types,
)
from bench.sizing.components import measure


@pytest.fixture(scope="module")
def q8_file(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bench.families.gguf import quantize_checkpoint

    out = tmp_path_factory.mktemp("gguf") / "transformer-Q8_0.gguf"
    quantize_checkpoint(tiny_pipeline / "transformer", out, "Q8_0")
    return out


def test_weights_term_equals_bytes_loaded_by_from_single_file(
    tiny_pipeline: Path, q8_file: Path
) -> None:
    from bench.backends.gguf import GGUFVariant, load_gguf_transformer
    from bench.models.loading import component_weights

    base = folder_base(tiny_pipeline)
    variant = gguf_variant(base, file=q8_file, compute_dtype="float32")
    predicted = variant.pipe.components["transformer"]

    spec = GGUFVariant(name="Q8_0", kind="gguf", quant="Q8_0", compute_dtype="float32")
    model = load_gguf_transformer(str(tiny_pipeline), spec, str(q8_file))
    loaded = component_weights(type("P", (), {"components": {"transformer": model}})())
    assert predicted.bytes == loaded["transformer"]["bytes"]
    assert predicted.parameters == loaded["transformer"]["parameters"]


def test_recipe_layout_matches_the_file_tensor_by_tensor(
    tiny_pipeline: Path, q8_file: Path
) -> None:
    from bench.families.gguf import inspect_gguf

    base = folder_base(tiny_pipeline)
    transformer = base.modules["transformer"]
    # the tiny pipeline is float32, so kept-precision tensors are F16 in the file
    assert rule_types(transformer, "Q8_0", "F32") == inspect_gguf(q8_file).tensor_types
    layout = gguf_layout_from_file(q8_file, transformer, "float32")
    recipe = gguf_layout_from_rules(transformer, "Q8_0", "F32")
    from_recipe = measure("transformer", transformer, "float32", recipe)
    assert from_recipe.bytes == layout.loaded_bytes
    assert from_recipe.dequant_bytes > 0
