"""The variants of the backend runner tests and the one run that records them all.

test_runner_backends.py (bitsandbytes, layerwise) and test_runner_torchao_quanto.py (torchao,
quanto) read the same kind of run: their variants on the tiny pipeline, one prompt, two steps,
no offload. Each cell is a fresh process whatever run it is in, so one run with every variant
records what two did, without a second run's set-up (its plan, its warm process server) and a
second full-precision cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.runner.sample_config import BASE_CONFIG

FULL: dict[str, Any] = {"name": "full", "kind": "full", "dtype": "float32"}

BNB_LAYERWISE: list[dict[str, Any]] = [
    FULL,
    {"name": "nf4", "kind": "bitsandbytes", "scheme": "nf4", "dtype": "float32"},
    {
        "name": "int8-te",
        "kind": "bitsandbytes",
        "scheme": "int8",
        "dtype": "float32",
        "components": ["text_encoder", "text_encoder_2"],
    },
    {
        "name": "nf4dq-te",
        "kind": "bitsandbytes",
        "scheme": "nf4",
        "double_quant": True,
        "dtype": "float32",
        "components": ["text_encoder_2"],
    },
    {"name": "fp8", "kind": "layerwise", "compute_dtype": "float32"},
]

QUANTO_BOTH = ["transformer", "text_encoder_2"]
TORCHAO_QUANTO: list[dict[str, Any]] = [
    FULL,
    {"name": "ao-int8", "kind": "torchao", "scheme": "int8wo", "dtype": "float32"},
    # transformer only: with T5 listed too, which library fails first (and so the recorded
    # error) depends on the order diffusers loads components in, which varies with
    # PYTHONHASHSEED (docs/backends.md)
    {"name": "ao-int4", "kind": "torchao", "scheme": "int4wo"},
    {
        "name": "q-int4",
        "kind": "quanto",
        "scheme": "int4",
        "dtype": "bfloat16",
        "components": QUANTO_BOTH,
    },
]


def run_every_variant(folder: Path) -> Path:
    """Every variant above (full once) on the tiny pipeline, one cell each."""
    from bench.runner.executor import run_config

    variants = BNB_LAYERWISE + [v for v in TORCHAO_QUANTO if v is not FULL]
    config = {
        **BASE_CONFIG,
        "variants": variants,
        "prompts": BASE_CONFIG["prompts"][:1],
        "steps": 2,
        "warmup": 0,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_config(path, folder / "results")
