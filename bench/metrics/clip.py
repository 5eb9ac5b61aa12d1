"""CLIP: the model behind the CLIP score (bench.metrics.clip_score) and the image embeddings
the distribution metrics use as features (bench.metrics.features).

torchmetrics 1.9's `CLIPScore` only loads hub ids (a local folder needs a callable) and breaks
with transformers 5, whose `get_image_features` returns an output object instead of a tensor.
So the embeddings are computed here with transformers' CLIPModel directly.

Models are loaded from a local folder, or from the local Hugging Face cache for a hub id;
nothing is ever downloaded (so `HF_HUB_OFFLINE` holds either way), and only safetensors are
read. When no model can be loaded the caller records status "unavailable" with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoTokenizer, CLIPModel, PreTrainedTokenizerBase

try:  # transformers 5: the default CLIPImageProcessor needs torchvision, the PIL one does not
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # transformers 4
    from transformers import CLIPImageProcessor

BATCH_SIZE = 16


class ClipUnavailable(Exception):
    """No CLIP model could be loaded; the message is the reason recorded in the scores."""


@dataclass
class ClipBundle:
    """A loaded CLIP model with its preprocessors. `name` is what the config said."""

    name: str
    source: str
    model: CLIPModel
    image_processor: CLIPImageProcessor
    tokenizer: PreTrainedTokenizerBase | None
    device: torch.device

    @property
    def max_text_tokens(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()


def load_clip(name: str | None, device: torch.device | None = None) -> ClipBundle:
    """Load CLIP from a local folder or the local hub cache; ClipUnavailable with the reason."""
    if not name:
        raise ClipUnavailable("no CLIP model configured (config.clip_model is not set)")
    device = device or default_device()
    is_path = _looks_like_path(name)
    if is_path:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ClipUnavailable(f"{name}: CLIP model folder not found")
        source = str(path.resolve())
    else:
        source = name
    try:
        model = CLIPModel.from_pretrained(source, local_files_only=True, use_safetensors=True)
        image_processor = CLIPImageProcessor.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        where = "folder" if is_path else "local Hugging Face cache"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClipUnavailable(
            f"{name}: cannot load a CLIP model (safetensors) from the {where}: {first}"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        tokenizer = None  # image embeddings still work; the CLIP score says what is missing
    model.eval().to(device)
    return ClipBundle(name, source, model, image_processor, tokenizer, device)


def _as_tensor(output: object) -> torch.Tensor:
    """transformers < 5 returns the projected embeddings; 5 returns an output object."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise TypeError(f"unexpected CLIP feature output {type(output).__name__}")


@torch.inference_mode()
def image_embeddings(bundle: ClipBundle, images: Sequence[Image.Image]) -> torch.Tensor:
    """Unit-norm projected image embeddings, (N, D) float32 on the CPU."""
    chunks = []
    for start in range(0, len(images), BATCH_SIZE):
        batch = [im.convert("RGB") for im in images[start : start + BATCH_SIZE]]
        pixels = bundle.image_processor(images=batch, return_tensors="pt")["pixel_values"]
        output = bundle.model.get_image_features(pixel_values=pixels.to(bundle.device))
        features = _as_tensor(output)
        chunks.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
    if not chunks:
        return torch.empty(0, bundle.model.config.projection_dim)
    return torch.cat(chunks)


@torch.inference_mode()
def text_embeddings(bundle: ClipBundle, texts: Sequence[str]) -> tuple[torch.Tensor, list[bool]]:
    """Unit-norm projected text embeddings and, per text, whether it was truncated to fit."""
    if bundle.tokenizer is None:
        raise ClipUnavailable(f"{bundle.name}: the CLIP folder has no tokenizer")
    limit = bundle.max_text_tokens
    truncated = [len(bundle.tokenizer(text)["input_ids"]) > limit for text in texts]
    chunks = []
    for start in range(0, len(texts), BATCH_SIZE):
        tokens = bundle.tokenizer(
            list(texts[start : start + BATCH_SIZE]),
            padding=True,
            truncation=True,
            max_length=limit,
            return_tensors="pt",
        )
        features = _as_tensor(
            bundle.model.get_text_features(
                input_ids=tokens["input_ids"].to(bundle.device),
                attention_mask=tokens["attention_mask"].to(bundle.device),
            )
        )
        chunks.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
    return torch.cat(chunks), truncated
