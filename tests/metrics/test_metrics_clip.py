"""CLIP score from a tiny random CLIP saved to a folder and loaded back (the real code path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.metrics.clip import ClipUnavailable, image_embeddings, load_clip, text_embeddings
from bench.metrics.clip_score import CLIP_SCORE


def _images(n: int, size: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)
    ]


def test_clip_score_matches_hand_computation(tiny_clip: Path) -> None:
    bundle = load_clip(str(tiny_clip), torch.device("cpu"))
    assert bundle.source == str(tiny_clip.resolve())
    images = _images(3)
    texts = ["a photo of a cat", "a futuristic city at sunset", "ein Hund"]
    scores, truncated = CLIP_SCORE.values(bundle, images, texts)
    assert truncated == [False, False, False]

    # By hand: vision tower -> pooled -> visual projection; text tower -> pooled (EOS) -> text
    # projection; cosine; 100 * max(cos, 0) per image (torchmetrics clamps the mean instead).
    model = bundle.model
    pixels = bundle.image_processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = bundle.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        txt = model.text_projection(
            model.text_model(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).pooler_output
        )
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    expected = (100 * cos.clamp(min=0)).tolist()
    assert scores == pytest.approx(expected, abs=1e-4)
    assert all(0.0 <= s <= 100.0 for s in scores)


def test_embeddings_are_unit_norm_and_batched(tiny_clip: Path) -> None:
    bundle = load_clip(str(tiny_clip), torch.device("cpu"))
    emb = image_embeddings(bundle, _images(20))  # more than one batch of 16
    assert emb.shape == (20, bundle.model.config.projection_dim)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(20), atol=1e-5)
    one = image_embeddings(bundle, _images(20)[-1:])
    assert torch.allclose(emb[-1], one[0], atol=1e-5)


def test_long_prompt_is_truncated_and_flagged(tiny_clip: Path) -> None:
    bundle = load_clip(str(tiny_clip), torch.device("cpu"))
    long_text = " ".join(["transformer inference chip with quantization pipelines"] * 40)
    emb, truncated = text_embeddings(bundle, [long_text, "short"])
    assert truncated == [True, False]
    assert emb.shape[0] == 2


def test_unavailable_models_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ClipUnavailable, match="not set"):
        load_clip(None)
    with pytest.raises(ClipUnavailable, match="folder not found"):
        load_clip(str(tmp_path / "missing-clip"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ClipUnavailable, match="cannot load"):
        load_clip(str(empty))
    with pytest.raises(ClipUnavailable, match="local Hugging Face cache"):
        load_clip("openai/clip-vit-large-patch14")
