"""bench.models.loading.from_pretrained: a component a backend passes is the one the pipeline
runs, for every family (WanPipeline's transformer is an optional component, which
DiffusionPipeline.from_pretrained ignores when passed: the GGUF rows of a Wan run then ran
the full-precision transformer and scored "identical")."""

from __future__ import annotations

import pytest

from bench.families import FAMILIES
from bench.families.synthetic import ensure_synthetic_pipeline
from bench.models.loading import from_pretrained, pipeline_class, transformer_class


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_passed_transformer_is_the_one_the_pipeline_holds(family: str) -> None:
    base = str(ensure_synthetic_pipeline("tiny", 0, family))
    assert pipeline_class(base).__name__ == FAMILIES[family].pipeline_class
    transformer = transformer_class(base).from_pretrained(base, subfolder="transformer")
    pipe = from_pretrained(base, "float32", transformer=transformer)
    assert pipe.transformer is transformer
