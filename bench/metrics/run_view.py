"""A run folder as the scorer sees it: cells, image records, images, and each cell's reference.

Images are decoded on demand and never kept, so a run of any size scores in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.metrics.images import LoadedImage, load_image, load_video
from bench.metrics.noise_floor import is_noise_floor
from bench.results import (
    cell_records,
    frame_paths,
    image_records,
    read_manifest,
    read_records,
)
from bench.run_schema import FULL_REFERENCE, TWIN_REFERENCE


@dataclass
class Reference:
    """The full-precision cell a cell is paired with, or why there is none; and a speed-up
    cell's un-sped twin (the same variant, offload mode and resolution without the speed-up),
    which its paired metrics are scored against as well."""

    cell_id: str | None
    role: str  # reference | candidate | noise_floor
    note: str | None = None
    speedup: bool = False  # a speed-up cell (bench/speedups): it has a twin, or a twin_note
    twin: str | None = None
    twin_note: str | None = None

    @property
    def compared_to(self) -> str | None:
        """The cell this cell is scored against: None for the reference itself or when none."""
        return None if self.role == "reference" else self.cell_id

    def paired_with(self) -> list[tuple[str, str | None]]:
        """(reference cell, label) for each reference of the paired metrics: a plain cell's
        full-precision cell, unlabelled as before twins existed; a speed-up cell's `full` and
        `twin` cells, one `twin` where they are the same cell (a full-precision variant's)."""
        if not self.speedup:
            return [] if self.compared_to is None else [(self.compared_to, None)]
        pairs = (
            [] if self.compared_to in (None, self.twin) else [(self.compared_to, FULL_REFERENCE)]
        )
        return pairs + ([(self.twin, TWIN_REFERENCE)] if self.twin is not None else [])


@dataclass
class RunView:
    run_dir: Path
    manifest: dict[str, Any]
    cells: list[dict[str, Any]]
    images: list[dict[str, Any]]
    cell_status: dict[str, str]
    image_paths: dict[tuple[str, str, int], str | None]
    image_status: dict[tuple[str, str, int], str]
    prompts: dict[str, str]
    #: a video record's frame files, in order (absent for images)
    frame_files: dict[tuple[str, str, int], list[str]] = field(default_factory=dict)
    references: dict[str, Reference] = field(default_factory=dict)
    _status: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def cell_ok(self, cell_id: str) -> bool:
        return self.cell_status.get(cell_id) == "ok"

    def load(self, cell_id: str, prompt_id: str, repeat: int) -> LoadedImage:
        """The image of one (cell, prompt, repeat); failures are statuses.

        Images are decoded on each call and not kept (a FLUX-size run holds gigabytes of
        pixels); only each image's status is remembered, for counting.
        """
        key = (cell_id, prompt_id, repeat)
        if key not in self.image_status:
            loaded = LoadedImage(None, "not_generated", "no image record in records.jsonl")
        elif self.image_status[key] != "ok" or not self.image_paths.get(key):
            loaded = LoadedImage(
                None, "image_failed", f"image record status {self.image_status[key]!r}"
            )
        else:
            cell = next(c for c in self.cells if c["cell_id"] == cell_id)
            size = (cell["width"], cell["height"])
            if key in self.frame_files:
                loaded = load_video([self.run_dir / f for f in self.frame_files[key]], size)
            else:
                loaded = load_image(self.run_dir / str(self.image_paths[key]), size)
        self._status[key] = loaded.status
        return loaded

    def readable(self, cell_id: str, prompt_id: str, repeat: int) -> bool:
        key = (cell_id, prompt_id, repeat)
        if key not in self._status:
            self.load(*key)
        return self._status[key] == "ok"


def read_run(run_dir: Path) -> RunView:
    manifest = read_manifest(run_dir)
    records = read_records(run_dir)
    images = image_records(records)
    view = RunView(
        run_dir=run_dir,
        manifest=manifest,
        cells=list(manifest.get("cells", [])),
        images=list(manifest.get("images", [])),
        cell_status={cid: rec.get("status", "?") for cid, rec in cell_records(records).items()},
        image_paths={key: rec.get("image") for key, rec in images.items()},
        image_status={key: rec.get("status", "?") for key, rec in images.items()},
        prompts={p["id"]: p["text"] for p in manifest.get("prompts", [])},
        frame_files={key: names for key, rec in images.items() if (names := frame_paths(rec))},
    )
    view.references = choose_references(view.cells, view.cell_status)
    return view


def reference_variant(cells: list[dict[str, Any]]) -> str | None:
    """The first full-precision variant that is not a noise-floor repeat."""
    for cell in cells:
        spec = cell.get("variant_spec") or {}
        if spec.get("kind") == "full" and not is_noise_floor(cell):
            return str(cell["variant"])
    return None


def choose_references(
    cells: list[dict[str, Any]], cell_status: dict[str, str]
) -> dict[str, Reference]:
    """Pair each cell with the full-precision cell of the same offload mode and resolution.

    When that cell did not run ok, any ok full-precision cell at the same resolution serves:
    full precision gives the same images under every offload mode up to numerics. A speed-up
    cell is never a reference (not even a full-precision variant's), and has its twin besides
    (`_twin`). The choice is recorded in every score row.
    """
    full = reference_variant(cells)
    plain = [c for c in cells if not c.get("speedup")]
    chosen: dict[str, Reference] = {}
    for cell in cells:
        chosen[cell["cell_id"]] = _full_reference(cell, full, plain, cell_status)
        if cell.get("speedup"):
            chosen[cell["cell_id"]] = _twin(chosen[cell["cell_id"]], cell, cells, cell_status)
    return chosen


def _full_reference(
    cell: dict[str, Any], full: str | None, plain: list[dict[str, Any]], status: dict[str, str]
) -> Reference:
    """The full-precision cell `cell` is scored against (see choose_references)."""
    cell_id = cell["cell_id"]
    if full is None:
        return Reference(
            None,
            "candidate",
            "the run has no full-precision variant (variant_spec.kind == 'full'), "
            "which paired and distribution metrics compare against",
        )
    if cell["variant"] == full and not cell.get("speedup"):
        return Reference(cell_id, "reference", "full precision: the reference")
    role = "noise_floor" if is_noise_floor(cell) else "candidate"
    same_res = [
        c
        for c in plain
        if c["variant"] == full and (c["height"], c["width"]) == (cell["height"], cell["width"])
    ]
    same_res.sort(key=lambda c: c["offload"] != cell["offload"])
    ok = [c for c in same_res if status.get(c["cell_id"]) == "ok"]
    if not ok:
        size = f"{cell['height']}x{cell['width']}"
        return Reference(None, role, f"no full-precision cell ({full}) ran ok at {size}")
    ref = ok[0]
    note = None
    if ref["offload"] != cell["offload"]:
        note = (
            f"reference fallback: {full} with offload {cell['offload']} did not run ok; "
            f"using offload {ref['offload']}"
        )
    return Reference(ref["cell_id"], role, note)


def twin_of(cell: dict[str, Any], cells: Iterable[dict[str, Any]]) -> str | None:
    """The id of a speed-up cell's un-sped twin among `cells` (manifest cells): the first cell
    of the same variant, offload mode and resolution without a speed-up, whatever its status;
    None for a cell without a speed-up or a run without that cell. The one twin rule, for the
    scorer and the report alike."""
    if not cell.get("speedup"):
        return None
    same = ("variant", "offload", "height", "width")
    for other in cells:
        if not other.get("speedup") and all(other[k] == cell[k] for k in same):
            return str(other["cell_id"])
    return None


def _twin(
    ref: Reference, cell: dict[str, Any], cells: list[dict[str, Any]], status: dict[str, str]
) -> Reference:
    """`ref` with the speed-up cell's un-sped twin (`twin_of`) when it ran ok (no fallback:
    the twin is what isolates the speed-up's effect)."""
    twin = twin_of(cell, cells)
    if twin is None:
        return replace(ref, speedup=True, twin_note="the run has no cell without the speed-up")
    if status.get(twin) != "ok":
        note = f"the twin {twin} did not run ok ({status.get(twin, 'not run')})"
        return replace(ref, speedup=True, twin_note=note)
    return replace(ref, speedup=True, twin=twin)
