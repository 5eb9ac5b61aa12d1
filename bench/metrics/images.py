"""Reading generated images for scoring, with failures as data instead of exceptions.

A missing or corrupt PNG must mark that one image and let the rest be scored, so loading
returns a status next to the tensor rather than raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image, or the reason it could not be read.

    Kept as 8-bit PIL (a quarter of the float size); `tensor` converts on demand.
    """

    image: Image.Image | None
    status: str
    note: str | None = None
    #: a video's frames in order (``image`` is the first); empty for an image
    frames: tuple[Image.Image, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_video(self) -> bool:
        return bool(self.frames)

    @property
    def pictures(self) -> list[Image.Image]:
        """Every picture it holds: a video's frames, an image alone, nothing when unread."""
        if self.frames:
            return list(self.frames)
        return [] if self.image is None else [self.image]

    def frame_tensors(self) -> list[torch.Tensor]:
        """Each picture as (1, 3, H, W) in [0, 1]."""
        return [pil_to_tensor(p) for p in self.pictures]

    @property
    def tensor(self) -> torch.Tensor | None:
        """Float tensor (1, 3, H, W) in [0, 1], the layout torchmetrics' image metrics expect."""
        return None if self.image is None else pil_to_tensor(self.image)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB float tensor (1, 3, H, W) in [0, 1]; torchmetrics' image metrics expect this layout."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def load_image(path: Path | None, size: tuple[int, int] | None = None) -> LoadedImage:
    """Load a PNG; status ok, image_missing (no file), image_unreadable (corrupt, truncated) or
    image_wrong_size (not the `size` (width, height) its record names).

    The size is read from the header before any pixel is decoded: a damaged or hand-made PNG
    claiming 50000x50000 pixels costs nothing instead of gigabytes (or a PIL decompression-bomb
    exception).
    """
    if path is None:
        return LoadedImage(None, "image_missing", "the image record names no file")
    if not path.is_file():
        return LoadedImage(None, "image_missing", f"{path.name}: file not found")
    try:
        with Image.open(path) as image:
            if size is not None and image.size != size:
                width, height = image.size
                return LoadedImage(
                    None,
                    "image_wrong_size",
                    f"{path.name}: {width}x{height} pixels, its record says {size[0]}x{size[1]}",
                )
            image.load()
            return LoadedImage(image.convert("RGB"), "ok")
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as exc:
        return LoadedImage(None, "image_unreadable", f"{path.name}: {type(exc).__name__}: {exc}")


def load_video(paths: list[Path], size: tuple[int, int] | None = None) -> LoadedImage:
    """Every frame of a video (each as `load_image` reads it); the first frame that cannot be
    read makes the video's status, its note naming the frame."""
    if not paths:
        return LoadedImage(None, "image_missing", "the video record names no frames")
    frames = []
    for path in paths:
        loaded = load_image(path, size)
        if not loaded.ok or loaded.image is None:
            return LoadedImage(None, loaded.status, f"frame {path.parent.name}/{loaded.note}")
        frames.append(loaded.image)
    return LoadedImage(frames[0], "ok", frames=tuple(frames))
