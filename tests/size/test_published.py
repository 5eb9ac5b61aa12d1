"""FLUX.1-dev without its weights, against published figures (published-figures.md).

The GGUF sizes come from the type layouts and are compared with city96's files; the peaks are
compared with the Hugging Face quantization blog (H100, 1024², torch max reserved, GiB). Those
peaks also fitted ALLOCATOR_FACTOR (terms.py), so they show consistency, not an independent test;
`bench size --check` on a GPU run is the independent one.
"""

from __future__ import annotations

import pytest

from bench.families.sizing import PUBLISHED_GGUF_GB, gguf_variant
from bench.sizing.predict import parse_offload, predict
from bench.sizing.sources import builtin_base, builtin_variants
from bench.sizing.terms import Scenario
from bench.sizing.units import GIB


@pytest.fixture(scope="module")
def flux():
    return builtin_base("flux-dev")


def test_component_sizes_match_the_published_bf16_sizes(flux) -> None:
    comps = builtin_variants(flux, [])[0].pipe.components
    published_gb = {"transformer": 23.8, "text_encoder_2": 9.52, "text_encoder": 0.246,
                    "vae": 0.168}  # fmt: skip
    for name, gb in published_gb.items():
        assert comps[name].bytes / 1e9 == pytest.approx(gb, rel=0.01)


@pytest.mark.parametrize("quant", ["Q8_0", "Q6_K", "Q5_K_S", "Q4_K_S", "Q4_0", "Q2_K"])
def test_gguf_sizes_match_city96_files(flux, quant: str) -> None:
    variant = gguf_variant(flux, quant=quant)
    assert variant.published_file_gb == PUBLISHED_GGUF_GB[quant]
    assert variant.pipe.components["transformer"].bytes / 1e9 == pytest.approx(
        PUBLISHED_GGUF_GB[quant], rel=0.01
    )


@pytest.mark.parametrize(
    ("quant", "offload", "published_gib"),
    [(None, "none", 36.166), (None, "model", 23.271), ("Q8_0", "none", 25.973),
     ("Q8_0", "model", 12.965), ("Q4_0", "model", 9.164)],
)  # fmt: skip
def test_reserved_peaks_near_the_hf_blog(flux, quant, offload, published_gib) -> None:
    variant = gguf_variant(flux, quant=quant) if quant else builtin_variants(flux, [])[0]
    pred = predict(variant.pipe, Scenario(parse_offload(offload), 1024, 1024, 1, 512))
    assert pred.reserved_bytes / GIB == pytest.approx(published_gib, rel=0.06)
