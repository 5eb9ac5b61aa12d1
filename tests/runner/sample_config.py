"""A small real config for runner tests: two variants, two prompts, 64 px, 3 steps."""

from __future__ import annotations

from typing import Any

BASE_CONFIG: dict[str, Any] = {
    "name": "t",
    "model": {"source": "synthetic", "preset": "tiny", "seed": 0},
    "variants": [
        {"name": "full", "kind": "full", "dtype": "float32"},
        {"name": "Q8_0", "kind": "gguf", "quant": "Q8_0", "compute_dtype": "float32"},
    ],
    "offload": ["none"],
    "prompts": [
        {"id": "city", "text": "a futuristic city at sunset with neon lights"},
        {"id": "chip", "text": "macro photo of a chip with blue light"},
    ],
    "repeats": 1,
    "seed": 42,
    "height": 64,
    "width": 64,
    "steps": 3,
    "max_sequence_length": 32,
    "warmup": 1,
    "device": "cpu",
}
