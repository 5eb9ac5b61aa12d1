"""The warm cell server leaves a demo cell nothing to import (bench.runner.preload).

Every cell is forked from the server, so whatever a cell imports, or fills on first use, it pays
again in each of the demo's 17 cells. Loading the tiny pipeline in full precision and from a
GGUF file, generating one image with each and saving it as PNG must import nothing new after
the preload, and transformers' checkpoint conversion table (about a thousand regular expressions)
must already be built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fresh_python import run_python

pytestmark = pytest.mark.slow

LIBRARIES = ("accelerate", "bench", "diffusers", "gguf", "PIL", "safetensors", "torch")
LIBRARIES += ("tokenizers", "transformers")

CELL = """
import io, json, sys
import bench.runner.preload
from transformers import conversion_mapping

built = conversion_mapping._checkpoint_conversion_mapping_cache is not None
before = set(sys.modules)
import torch
from bench.backends import load_pipeline, parse_variant

base, gguf_file, libraries = sys.argv[1], sys.argv[2], tuple(sys.argv[3].split(","))
full = parse_variant({"name": "full", "kind": "full", "dtype": "float32"})
quant = parse_variant({"name": "q", "kind": "gguf", "quant": "Q4_K", "compute_dtype": "float32"})
for variant, artifacts in ((full, {}), (quant, {"gguf_file": gguf_file})):
    pipe = load_pipeline(base, variant, artifacts)
    pipe.to("cpu")
    image = pipe(
        "a city", height=64, width=64, num_inference_steps=1, max_sequence_length=16,
        generator=torch.Generator("cpu").manual_seed(0),
    ).images[0]
    image.save(io.BytesIO(), format="PNG")
new = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in libraries)
print(json.dumps({"built": built, "new": new}))
"""


def test_a_forked_cell_imports_nothing_after_the_preload(tiny_pipeline: Path) -> None:
    from bench.backends.gguf import make_gguf_from_base

    gguf_file = make_gguf_from_base(tiny_pipeline, "Q4_K")
    result, _ = run_python(CELL, str(tiny_pipeline), str(gguf_file), ",".join(LIBRARIES))
    assert result["built"], "transformers' conversion mapping is built in every cell"
    assert result["new"] == [], "imported in every cell instead of once in the server"
