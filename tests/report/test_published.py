"""Published rows are matched to cells by their variant settings, through the backends axis."""

from __future__ import annotations

from bench.backends import BACKENDS
from bench.reporting.published import HF_BACKENDS_BLOG, TABLES


def _cell(offload: str, **spec: object) -> dict:
    return {"variant": "v", "offload": offload, "variant_spec": {"name": "v", **spec}}


def test_every_published_row_names_a_registered_backend_and_its_real_keys() -> None:
    for table in TABLES:
        for row in table.rows:
            spec = dict(row.spec)
            backend = BACKENDS[str(spec["kind"])]
            fields = backend.config_model.model_fields
            assert set(spec) <= set(fields), (table.key, row.variant)
            # the row's settings are a valid variant of that backend
            backend.config_model.model_validate(
                {
                    "name": "x",
                    **spec,
                    **({"components": list(row.components)} if row.components else {}),
                }
            )


def test_rows_match_backend_scheme_offload_and_components() -> None:
    nf4 = next(r for r in HF_BACKENDS_BLOG.rows if r.variant == "bitsandbytes NF4")
    t5 = ["transformer", "text_encoder_2"]
    assert nf4.describes(_cell("none", kind="bitsandbytes", scheme="nf4", components=t5))
    assert not nf4.describes(_cell("model", kind="bitsandbytes", scheme="nf4", components=t5))
    assert not nf4.describes(_cell("none", kind="bitsandbytes", scheme="fp4", components=t5))
    # the blog quantized T5 too: a transformer-only cell is a different setup
    assert not nf4.describes(
        _cell("none", kind="bitsandbytes", scheme="nf4", components=["transformer"])
    )
    q8 = next(r for r in HF_BACKENDS_BLOG.rows if r.variant == "Q8_0" and r.offload == "model")
    assert q8.describes(_cell("model", kind="gguf", quant="Q8_0"))
    assert not q8.describes(_cell("model", kind="gguf", quant="Q4_1"))
    assert not q8.describes(_cell("model", kind="full"))
    full = next(r for r in HF_BACKENDS_BLOG.rows if r.variant == "full" and r.offload == "none")
    assert full.describes(_cell("none", kind="full", dtype="bfloat16"))
