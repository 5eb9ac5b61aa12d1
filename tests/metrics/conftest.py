"""Run folders built by hand, exactly as docs/run-folder.md describes, and a tiny local CLIP.

The fidelity ordering of the hand-made runs is known by construction: every variant's image is
the reference image plus Gaussian noise of a known, increasing size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.results import frame_relpath, video_relpath

NOISE = {"full": 0.0, "Q8_0": 2.0, "Q6_K": 6.0, "Q4_K": 16.0}  # noise sigma in 8-bit levels


def reference_array(prompt_id: str, repeat: int, size: int) -> np.ndarray:
    """A smooth, structured image that depends on (prompt, repeat) only."""
    seed = int.from_bytes(hashlib.sha256(f"{prompt_id}:{repeat}".encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [
        np.sin(2 * np.pi * (rng.uniform(1, 4) * x + rng.uniform(1, 4) * y + rng.uniform()))
        for _ in range(3)
    ]
    return ((np.stack(channels, -1) * 0.4 + 0.5) * 255).astype(np.uint8)


def noisy(array: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    if sigma == 0:
        return array.copy()
    rng = np.random.default_rng(seed)
    return np.clip(array + rng.normal(0, sigma, array.shape), 0, 255).round().astype(np.uint8)


def write_run(
    root: Path,
    variants: dict[str, dict[str, Any]] | None = None,
    offloads: tuple[str, ...] = ("none",),
    prompts: tuple[str, ...] = ("p0", "p1", "p2", "p3"),
    repeats: int = 1,
    size: int = 32,
    cell_status: dict[str, str] | None = None,
    clip_model: str | None = None,
    noise: dict[str, float] | None = None,
    frames: int | None = None,
    bad_frame: int | None = None,
) -> Path:
    """A run folder: manifest.json, records.jsonl and PNGs, per docs/run-folder.md.

    ``frames``: a video run, each record's frames written where the runner writes them (frame
    ``i`` is the reference of repeat ``i`` plus the variant's noise); ``bad_frame``: that frame
    of every non-reference variant gets four times its noise, so the worst frame is known.
    """
    variants = variants or {
        "full": {"name": "full", "kind": "full", "dtype": "float32"},
        "Q8_0": {"name": "Q8_0", "kind": "gguf", "quant": "Q8_0"},
        "Q6_K": {"name": "Q6_K", "kind": "gguf", "quant": "Q6_K"},
        "Q4_K": {"name": "Q4_K", "kind": "gguf", "quant": "Q4_K"},
    }
    noise = {**NOISE, **(noise or {})}
    cell_status = cell_status or {}
    run_id = "handmade-20250101-000000"
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    images = [
        {"prompt_id": p, "repeat": r, "seed": 1000 + i}
        for r in range(repeats)
        for i, p in enumerate(prompts)
    ]
    cells = [
        {
            "cell_id": f"{name}__{offload}__{size}x{size}",
            "variant": name,
            "offload": offload,
            "height": size,
            "width": size,
            "variant_spec": spec,
            "offload_spec": {"mode": offload},
            "transformer_file": None,
            **({"num_frames": frames, "fps": 8} if frames else {}),
        }
        for name, spec in variants.items()
        for offload in offloads
    ]
    manifest = {
        "schema": 1,
        "run_id": run_id,
        "created_at": "2025-01-01T00:00:00.000+00:00",
        "finished_at": "2025-01-01T00:10:00.000+00:00",
        "config": {"name": "handmade", "clip_model": clip_model},
        "config_hash": "0" * 16,
        "config_path": "handmade.yaml",
        "prompts": [{"id": p, "text": f"a photo of {p}"} for p in prompts],
        "images": images,
        "cells": cells,
        "base_model": {"source": "synthetic", "preset": "tiny", "synthetic": True},
        "environment": {},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    common = {"schema": 1, "run_id": run_id, "time": "2025-01-01T00:00:00.000+00:00"}
    records = []
    for cell in cells:
        where = {k: cell[k] for k in ("cell_id", "variant", "offload", "height", "width")}
        status = cell_status.get(cell["cell_id"], "ok")
        error = None if status == "ok" else {"type": "X", "message": "y", "phase": "load"}
        records.append({**common, **where, "kind": "cell", "status": status, "error": error})
        if status != "ok":
            continue
        for image in images:
            rel = f"images/{cell['cell_id']}/{image['prompt_id']}__r{image['repeat']}.png"
            base = reference_array(image["prompt_id"], image["repeat"], size)
            sigma = noise.get(cell["variant"], 0.0)
            array = noisy(base, sigma, seed=image["seed"] + len(cell["variant"]))
            video: dict[str, Any] = {}
            if frames:
                key = (cell["cell_id"], image["prompt_id"], image["repeat"])
                for i in range(frames):
                    base = reference_array(image["prompt_id"], image["repeat"] * 100 + i, size)
                    boost = 4.0 if i == bad_frame else 1.0
                    array = noisy(base, sigma * boost, seed=image["seed"] * 100 + i)
                    path = run_dir / frame_relpath(*key, i)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(array).save(path)
                rel = frame_relpath(*key, 0)
                video = {"num_frames": frames, "fps": 8, "video": video_relpath(*key)}
                Image.fromarray(array).save(run_dir / video["video"])
            else:
                (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(run_dir / rel)
            records.append(
                {
                    **common,
                    **where,
                    "kind": "image",
                    "status": "ok",
                    "error": None,
                    **image,
                    "image": rel,
                    **video,
                    "wall_s": 0.1,
                    "step_s": [0.01],
                }
            )
    with (run_dir / "records.jsonl").open("w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return run_dir


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def build(**kwargs: Any) -> Path:
        return write_run(tmp_path / f"runs{next(counter)}", **kwargs)

    return build


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random CLIP model with a local tokenizer and image processor, saved to a folder."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from bench.metrics.clip import CLIPImageProcessor
    from bench.models.tokenizers import build_clip_tokenizer

    tokenizer = build_clip_tokenizer(model_max_length=77)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(config)
    folder = tmp_path_factory.mktemp("tiny-clip")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder
