"""Image grids: per prompt, every variant side by side at the same seed, with a difference map
against full precision, so "barely a difference" can be checked by eye rather than taken from a
PSNR figure.

A video is shown as a frame strip: `STRIP_FRAMES` frames evenly spaced from the first to the
last, side by side, one row per variant with its difference strip beside it.

The difference map is |variant − full| averaged over RGB, in 8-bit levels, drawn on a fixed
colour scale clipped at `DIFF_CLIP` levels (an amplification of 255 / DIFF_CLIP), the same for
every panel and every prompt so maps can be compared with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from bench.metrics.images import load_image, load_video
from bench.reporting.artifacts import Picture
from bench.reporting.data import (
    RunData,
    offload_order,
    reference_variant,
    speedup_of,
    variant_order,
)
from bench.results import frame_paths

DIFF_CLIP = 32  # 8-bit levels at the top of the colour scale
AMPLIFY = round(256 / DIFF_CLIP)  # the colour scale spans 1/AMPLIFY of the full range
DPI = 110
STRIP_FRAMES = 6  # frames of a video in its strip (all of them when it has fewer)
STRIP_GAP = 4  # white pixels between the frames of a strip


@dataclass(frozen=True)
class Slot:
    """One column of a grid: the variant, the cell its image comes from, or why there is none."""

    variant: str
    cell_id: str | None
    image: np.ndarray | None
    note: str = ""


def strip_indices(count: int, shown: int = STRIP_FRAMES) -> list[int]:
    """Frames of a strip: evenly spaced, the first and the last included."""
    if count <= shown:
        return list(range(count))
    return sorted({round(i * (count - 1) / (shown - 1)) for i in range(shown)})


def _load(run: RunData, cell_id: str, prompt_id: str, repeat: int) -> np.ndarray | None:
    record = run.images.get((cell_id, prompt_id, repeat))
    if not record or record.get("status") != "ok" or not record.get("image"):
        return None
    cell = run.cells[cell_id]
    size = (cell["width"], cell["height"])
    frames = frame_paths(record)
    if frames:
        picked = [run.run_dir / frames[i] for i in strip_indices(len(frames))]
        video = load_video(picked, size)
        if not video.ok:
            return None
        gap = np.full((cell["height"], STRIP_GAP, 3), 255, dtype=np.int16)
        parts = [np.asarray(f, dtype=np.int16) for f in video.frames]
        return np.concatenate([p for f in parts for p in (f, gap)][:-1], axis=1)
    # The scorer's reader: a PNG not of its cell's size is refused from its header.
    loaded = load_image(run.run_dir / record["image"], size)
    return None if loaded.image is None else np.asarray(loaded.image, dtype=np.int16)


def _cells_of(run: RunData, variant: str, resolution: tuple[int, int]) -> list[dict]:
    """The variant's cells at `resolution`, speed-up cells left out: their images are not the
    variant's own (the speed-up section compares them with their twin)."""
    return [
        c
        for c in run.manifest["cells"]
        if c["variant"] == variant and (c["height"], c["width"]) == resolution and not speedup_of(c)
    ]


def _pick_mode(run: RunData, prompt_id: str, repeat: int, resolution: tuple[int, int]) -> str:
    """The offload mode in which most variants have this image (first in config order on ties)."""
    counts = {mode: 0 for mode in offload_order(run)}
    for cell in run.manifest["cells"]:
        if (cell["height"], cell["width"]) != resolution:
            continue
        record = run.images.get((cell["cell_id"], prompt_id, repeat)) or {}
        if record.get("status") == "ok":
            counts[cell["offload"]] += 1
    return max(counts, key=lambda m: counts[m]) if counts else "none"


def _slot(
    run: RunData, variant: str, mode: str, prompt_id: str, repeat: int, res: tuple[int, int]
) -> Slot:
    """The variant's image in `mode`, else from any of its cells that produced it."""
    cells = _cells_of(run, variant, res)
    cells.sort(key=lambda c: c["offload"] != mode)
    for cell in cells:
        image = _load(run, cell["cell_id"], prompt_id, repeat)
        if image is not None:
            return Slot(variant, cell["cell_id"], image)
    rows = run.summary[run.summary["cell_id"].isin([c["cell_id"] for c in cells])]
    statuses = sorted({str(r) for r in rows["status"]})
    errors = rows["error_type"].dropna().unique()
    note = "no image: " + ", ".join(statuses)
    if len(errors):
        note += f" ({', '.join(map(str, errors))})"
    return Slot(variant, None, None, note)


def _draw(
    run: RunData,
    slots: list[Slot],
    reference: Slot | None,
    prompt_text: str,
    title: str,
    path: Path,
    strips: bool = False,
) -> list[str]:
    """Draw one grid; returns per-variant difference statistics for the caption.

    Images: a column per variant, the image above its difference map. Videos (``strips``): a
    row per variant, the frame strip beside its difference strip.
    """
    n = len(slots)
    if strips:
        fig, axes = plt.subplots(
            n, 2, figsize=(13.0, 1.5 * n + 1.2), squeeze=False, layout="constrained"
        )
        pairs = [(axes[i][0], axes[i][1]) for i in range(n)]
    else:
        fig, axes = plt.subplots(
            2, n, figsize=(2.3 * n + 1.2, 5.6), squeeze=False, layout="constrained"
        )
        pairs = [(axes[0][i], axes[1][i]) for i in range(n)]
    stats = []
    heat = None
    for slot, (top, bottom) in zip(slots, pairs, strict=True):
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        offload = run.cells[slot.cell_id]["offload"] if slot.cell_id else ""
        if strips:
            top.set_ylabel(f"{slot.variant}\n{offload}", fontsize=8)
        else:
            top.set_title(f"{slot.variant}\n{offload}", fontsize=9)
        if slot.image is None:
            top.text(0.5, 0.5, slot.note, ha="center", va="center", wrap=True, fontsize=7)
            bottom.axis("off")
            continue
        top.imshow(slot.image.astype(np.uint8), interpolation="nearest")
        if reference is None or reference.image is None:
            bottom.text(0.5, 0.5, "no full-precision image", ha="center", va="center", fontsize=7)
            continue
        if slot.cell_id == reference.cell_id:
            bottom.text(
                0.5, 0.5, "reference\n(full precision)", ha="center", va="center", fontsize=8
            )
            continue
        if slot.image.shape != reference.image.shape:
            bottom.text(
                0.5, 0.5, "size differs from reference", ha="center", va="center", fontsize=7
            )
            continue
        diff = np.abs(slot.image - reference.image).mean(axis=2)
        heat = bottom.imshow(diff, cmap="inferno", vmin=0, vmax=DIFF_CLIP, interpolation="nearest")
        bottom.set_xlabel(f"mean {diff.mean():.2f}, max {diff.max():.0f}", fontsize=8)
        stats.append(f"{slot.variant}: mean {diff.mean():.2f}, max {diff.max():.0f} levels")
    if strips:
        axes[0][0].set_title("frames", fontsize=9)
        axes[0][1].set_title("|diff| to full", fontsize=9)
    else:
        axes[0][0].set_ylabel("image", fontsize=9)
        axes[1][0].set_ylabel("|diff| to full", fontsize=9)
    if heat is not None:
        bar = fig.colorbar(heat, ax=axes.ravel().tolist(), shrink=0.45, anchor=(0.0, 0.1))
        bar.set_label(
            f"|difference| (8-bit levels),\nclipped at {DIFF_CLIP} (×{AMPLIFY})",
            fontsize=8,
        )
    short = prompt_text if len(prompt_text) <= 90 else prompt_text[:87] + "..."
    fig.suptitle(f"{title}\n“{short}”", fontsize=9)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return stats


LABEL_HEIGHT = 14  # pixels of the name band above each video of a video grid
VIDEO_GRID_WIDTH = 1600  # pixels across a video grid at most


def _video_grid(
    run: RunData, slots: list[Slot], prompt_id: str, repeat: int, path: Path
) -> list[str] | None:
    """Every variant's video side by side, playing in step, as one animated WebP at the run's
    frame rate (Pillow writes it), each under its variant's name. Returns the variants shown, or
    None when no slot has a readable video."""
    from PIL import Image, ImageDraw

    videos = []
    for slot in slots:
        record = run.images.get((slot.cell_id, prompt_id, repeat)) if slot.cell_id else None
        if not record or not frame_paths(record):
            continue
        cell = run.cells[str(slot.cell_id)]
        loaded = load_video(
            [run.run_dir / f for f in frame_paths(record)], (cell["width"], cell["height"])
        )
        if loaded.ok:
            videos.append((slot.variant, loaded.frames, int(record.get("fps") or 1)))
    if not videos:
        return None
    count = min(len(frames) for _, frames, _ in videos)
    width, height = videos[0][1][0].size
    # At most VIDEO_GRID_WIDTH pixels across (the report inlines it): frames scaled down alike.
    scale = min(1.0, VIDEO_GRID_WIDTH / (width * len(videos)))
    if scale < 1.0:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        videos = [
            (name, [f.resize((width, height), Image.Resampling.LANCZOS) for f in frames], fps)
            for name, frames, fps in videos
        ]
    canvas = (width * len(videos) + STRIP_GAP * (len(videos) - 1), height + LABEL_HEIGHT)
    out = []
    for i in range(count):
        frame = Image.new("RGB", canvas, "white")
        draw = ImageDraw.Draw(frame)
        for k, (name, frames, _) in enumerate(videos):
            x = k * (width + STRIP_GAP)
            frame.paste(frames[i], (x, LABEL_HEIGHT))
            draw.text((x + 2, 1), name[: max(1, width // 6)], fill="black")
        out.append(frame)
    out[0].save(
        path, format="WEBP", save_all=True, append_images=out[1:], loop=0,
        duration=round(1000 / videos[0][2]), quality=85,
    )  # fmt: skip
    return [name for name, _, _ in videos]


def _frame_count(run: RunData, prompt_id: str, repeat: int, res: tuple[int, int]) -> int | None:
    """A video's frame count for this prompt (the first ok record that has one), else None."""
    for (cell_id, pid, r), record in run.images.items():
        cell = run.cells[cell_id]
        same = (pid, r) == (prompt_id, repeat) and (cell["height"], cell["width"]) == res
        if same and record.get("status") == "ok" and (frames := frame_paths(record)):
            return len(frames)
    return None


def image_grids(run: RunData, out_dir: Path) -> list[Picture]:
    """One grid per (prompt, resolution), first repeat that has any image."""
    prompts = {p["id"]: p.get("text", "") for p in run.manifest["prompts"]}
    resolution_of = {cid: (c["height"], c["width"]) for cid, c in run.cells.items()}
    resolutions = list(dict.fromkeys(resolution_of.values()))
    variants = variant_order(run)
    ref_variant = reference_variant(run)
    pictures = []
    for res in resolutions:
        for prompt_id, text in prompts.items():
            key = f"grid-{prompt_id}-{res[0]}x{res[1]}"
            title = f"Prompt {prompt_id}, {res[0]}×{res[1]}"
            repeats = sorted(
                {i["repeat"] for i in run.manifest["images"] if i["prompt_id"] == prompt_id}
            )
            repeat = next(
                (
                    r
                    for r in repeats
                    if any(
                        (rec.get("status") == "ok")
                        for (cid, pid, rr), rec in run.images.items()
                        if pid == prompt_id and rr == r and resolution_of.get(cid) == res
                    )
                ),
                None,
            )
            if repeat is None:
                pictures.append(
                    Picture(key, title, reason="no cell produced an image for this prompt")
                )
                continue
            mode = _pick_mode(run, prompt_id, repeat, res)
            slots = [
                _slot(run, v, mode, prompt_id, repeat, res)
                for v in variants
                if _cells_of(run, v, res)
            ]
            reference = next((s for s in slots if s.variant == ref_variant), None)
            seed = next(
                (
                    i["seed"]
                    for i in run.manifest["images"]
                    if i["prompt_id"] == prompt_id and i["repeat"] == repeat
                ),
                None,
            )
            filename = f"{key}.png"
            frames = _frame_count(run, prompt_id, repeat, res)
            stats = _draw(
                run,
                slots,
                reference,
                text,
                f"{title}, repeat {repeat}, seed {seed}",
                out_dir / filename,
                strips=frames is not None,
            )
            shown = ""
            if frames is not None:
                picked = ", ".join(str(i + 1) for i in strip_indices(frames))
                shown = f"Frames {picked} of {frames}, left to right. "
            caption = shown + (
                f"Same seed ({seed}) for every variant, offload mode {mode} where it ran. "
                "Bottom row: |variant − full precision| averaged over RGB, colour scale "
                f"clipped at {DIFF_CLIP} of 255 levels (×{AMPLIFY}). "
            )
            if stats:
                caption += "Differences: " + "; ".join(stats) + "."
            if reference is None or reference.image is None:
                caption += " No full-precision image for this prompt: no difference maps."
            pictures.append(Picture(key, title, filename, caption.strip()))
            if frames is not None:
                video_name = f"video-{prompt_id}-{res[0]}x{res[1]}.webp"
                shown = _video_grid(run, slots, prompt_id, repeat, out_dir / video_name)
                if shown:
                    pictures.append(
                        Picture(
                            f"video-{prompt_id}-{res[0]}x{res[1]}",
                            f"{title}, the videos",
                            video_name,
                            f"Every variant's video of repeat {repeat} (seed {seed}) side by side, "
                            f"playing in step at the run's frame rate (WebP, quality 85): "
                            f"{', '.join(shown)}.",
                        )
                    )
    return pictures
