"""The shape of a run folder's files (docs/run-folder.md, docs/scores.md), checked on reading.

Every stage indexes records and manifest entries directly (`record["cell_id"]`,
`cell["height"]`), so a hand-edited or damaged file would surface as a KeyError or TypeError
deep inside a stage. The readers in bench.results check each file against the shapes here
first and raise one RunFolderError line naming the file, the line and the key. Keys beyond
these are allowed (newer writers add some); keys listed must have the listed type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench import limits
from bench.config import check_recorded_keys
from bench.errors import ConfigError, RunFolderError

# Types by name; an integer is never a bool here (JSON's true is not 1).
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "num": (int, float),
    "bool": (bool,),
    "object": (dict,),
    "list": (list,),
}
_SHOWN = {"str": "a string", "int": "an integer", "num": "a number", "bool": "true or false"}
_SHOWN |= {"object": "an object", "list": "a list", "null": "null"}

Fields = Mapping[str, tuple[str, bool]]  # key -> ("int|null", required)


def _is(value: Any, kinds: str) -> bool:
    for kind in kinds.split("|"):
        if kind == "null":
            if value is None:
                return True
        elif isinstance(value, _TYPES[kind]) and not (
            kind in ("int", "num") and isinstance(value, bool)
        ):
            return True
    return False


def _describe(kinds: str) -> str:
    return " or ".join(_SHOWN[k] for k in kinds.split("|"))


def check_fields(obj: Any, fields: Fields, where: str, prefix: str = "") -> None:
    """`obj` must be an object whose listed keys have their types; RunFolderError otherwise."""
    if not isinstance(obj, dict):
        raise RunFolderError(f"{where}: {prefix or 'the entry'} must be a JSON object")
    for key, (kinds, required) in fields.items():
        if key not in obj:
            if required and prefix:
                raise RunFolderError(f"{where}: {prefix.rstrip('.')} lacks {key}")
            if required:
                raise RunFolderError(f"{where}: required key {key!r} is missing")
            continue
        if not _is(obj[key], kinds):
            shown = repr(obj[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise RunFolderError(
                f"{where}: {prefix + key!r} must be {_describe(kinds)}, got {shown}"
            )


def _check_numbers(obj: Any, where: str, prefix: str) -> None:
    """A memory phase: counters are numbers (or null), never strings."""
    if obj is None:
        return
    if not isinstance(obj, dict):
        raise RunFolderError(f"{where}: {prefix!r} must be an object or null")
    for key, value in obj.items():
        if not _is(value, "num|null"):
            raise RunFolderError(f"{where}: '{prefix}.{key}' must be a number or null")


def _check_list_of(values: list[Any], kinds: str, where: str, key: str) -> None:
    for i, value in enumerate(values):
        if not _is(value, kinds):
            raise RunFolderError(f"{where}: '{key}[{i}]' must be {_describe(kinds)}")


# Keys that name a cell, an image of a prompt, and a video's length: the same in the manifest's
# entries, the records and the scores that refer to them.
_CELL_KEYS: Fields = {
    "cell_id": ("str", True),
    "variant": ("str", True),
    "offload": ("str", True),
    "height": ("int", True),
    "width": ("int", True),
}
_IMAGE_KEYS: Fields = {"prompt_id": ("str", True), "repeat": ("int", True)}
_VIDEO_KEYS: Fields = {"num_frames": ("int|null", False), "fps": ("int|null", False)}

# manifest.json
MANIFEST_LISTS = ("cells", "images", "prompts")
_MANIFEST: Fields = {
    "run_id": ("str", True),
    "config": ("object", True),
    "created_at": ("str|null", False),
    "finished_at": ("str|null", False),
    "config_hash": ("str|null", False),
    "config_path": ("str|null", False),
    "only": ("list|null", False),
    "base_model": ("object|null", False),
    "environment": ("object|null", False),
}
_PROMPT: Fields = {"id": ("str", True), "text": ("str", True)}
_IMAGE: Fields = {**_IMAGE_KEYS, "seed": ("int", True)}
_CELL: Fields = {
    **_CELL_KEYS,
    "variant_spec": ("object|null", False),
    "offload_spec": ("object|null", False),
    "speedup": ("str|null", False),  # a speed-up cell only (bench/speedups)
    "speedup_spec": ("object|null", False),
    "transformer_file": ("object|null", False),
    **_VIDEO_KEYS,  # video families only
}


def check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """The manifest's shape: entries stages index, unique ids, a config whose keys are valid."""
    if not isinstance(manifest, dict):
        raise RunFolderError(f"{where}: expected a JSON object, found {type(manifest).__name__}")
    missing = [key for key in MANIFEST_LISTS if not isinstance(manifest.get(key), list)]
    if missing:
        raise RunFolderError(
            f"{where}: missing or not a list: {', '.join(missing)} (docs/run-folder.md)"
        )
    check_fields(manifest, _MANIFEST, where)
    empty = [key for key in MANIFEST_LISTS if not manifest[key]]
    if empty:  # a run always has a cell, an image and a prompt: the config requires them
        raise RunFolderError(f"{where}: empty: {', '.join(empty)}")
    for key, fields, unique in (
        ("prompts", _PROMPT, ("id",)),
        ("images", _IMAGE, ("prompt_id", "repeat")),
        ("cells", _CELL, ("cell_id",)),
    ):
        seen: set[tuple[Any, ...]] = set()
        for i, entry in enumerate(manifest[key]):
            check_fields(entry, fields, where, prefix=f"{key}[{i}].")
            ident = tuple(entry[k] for k in unique)
            if ident in seen:
                raise RunFolderError(
                    f"{where}: {key}[{i}] repeats {dict(zip(unique, ident, strict=True))}"
                )
            seen.add(ident)
    for i, image in enumerate(manifest["images"]):
        if image["repeat"] < 0:
            raise RunFolderError(f"{where}: 'images[{i}].repeat' must not be negative")
    if manifest.get("only") is not None:
        _check_list_of(manifest["only"], "str", where, "only")
    try:
        check_recorded_keys(manifest["config"], f"{where}: config")
    except ConfigError as exc:
        raise RunFolderError(str(exc)) from None
    return manifest


# records.jsonl
RECORD_KINDS = ("cell", "image")
_RECORD: Fields = {
    "schema": ("int", True),
    "kind": ("str", True),
    "run_id": ("str", True),
    **_CELL_KEYS,
    "status": ("str", True),
    "error": ("object|null", False),
    "time": ("str|null", False),
}
_ERROR: Fields = {"type": ("str", True), "message": ("str", True), "phase": ("str|null", False)}
_CELL_RECORD: Fields = {
    "device": ("str|null", False),
    "load_s": ("num|null", False),
    "first_call_s": ("num|null", False),
    "warmup_s": ("list", False),
    "memory": ("object|null", False),
    "weights": ("object|null", False),
    "energy_supported": ("bool|null", False),
}
_IMAGE_RECORD: Fields = {
    **_IMAGE_KEYS,
    "seed": ("int|null", False),
    "image": ("str|null", False),
    "wall_s": ("num|null", False),
    "encode_s": ("num|null", False),
    "step_s": ("list", False),
    "decode_s": ("num|null", False),
    "energy_j": ("num|null", False),
    "memory": ("object|null", False),
    "cpu": ("object|null", False),
    # a video: its frames are images/<cell>/<prompt>__r<k>/NNNN.png (bench.results.frame_paths)
    "video": ("str|null", False),
    **_VIDEO_KEYS,
}


def check_record(record: dict[str, Any], where: str) -> None:
    """One line of records.jsonl (a JSON object already)."""
    check_fields(record, _RECORD, where)
    if record["kind"] not in RECORD_KINDS:
        raise RunFolderError(f"{where}: 'kind' must be 'cell' or 'image', got {record['kind']!r}")
    if record.get("error") is not None:
        check_fields(record["error"], _ERROR, where, prefix="error.")
    if record["kind"] == "cell":
        check_fields(record, _CELL_RECORD, where)
        if "warmup_s" in record:
            _check_list_of(record["warmup_s"], "num", where, "warmup_s")
        memory = record.get("memory") or {}
        for phase in ("load", "warmup", "baseline"):
            _check_numbers(memory.get(phase), where, f"memory.{phase}")
        return
    check_fields(record, _IMAGE_RECORD, where)
    if record["repeat"] < 0:
        raise RunFolderError(f"{where}: 'repeat' must not be negative")
    if "step_s" in record:
        _check_list_of(record["step_s"], "num", where, "step_s")
    _check_numbers(record.get("memory"), where, "memory")
    frames = record.get("num_frames")
    if frames is not None and not 1 <= frames <= limits.MAX_FRAMES:
        raise RunFolderError(f"{where}: 'num_frames' must be from 1 to {limits.MAX_FRAMES}")
    if record["status"] == "ok" and not _is(record.get("wall_s"), "num"):
        raise RunFolderError(f"{where}: an image with status 'ok' needs a number in 'wall_s'")


# scores.jsonl
#: A speed-up cell's rows of a paired metric name their reference in `reference`: its un-sped
#: twin or full precision (other cells' rows have no such field: full precision is implied).
TWIN_REFERENCE, FULL_REFERENCE = "twin", "full"
_SCORE: Fields = {
    "kind": ("str", True),
    "cell_id": ("str", True),
    "metric": ("str", True),
    "status": ("str", True),
    "value": ("num|null", True),
    "reference_cell_id": ("str|null", False),
    "reference": ("str|null", False),
    "note": ("str|null", False),
    "higher_is_better": ("bool|null", False),
}
_IMAGE_SCORE: Fields = {
    **_IMAGE_KEYS,
    "model": ("str|null", False),
    "identical": ("bool|null", False),
    "frames": ("int|null", False),  # a video: value pools its frames as `pooling` says
    "worst_frame": ("num|null", False),
}
_DIST_SCORE: Fields = {
    "features": ("str|null", False),
    "n": ("int|null", False),
    "n_reference": ("int|null", False),
}
SCORE_KINDS = {"image_score": _IMAGE_SCORE, "distribution_score": _DIST_SCORE}


def check_score_row(row: dict[str, Any], where: str) -> None:
    """One line of scores.jsonl (a JSON object already)."""
    check_fields(row, _SCORE, where)
    extra = SCORE_KINDS.get(row["kind"])
    if extra is None:
        raise RunFolderError(
            f"{where}: 'kind' must be one of {', '.join(SCORE_KINDS)}, got {row['kind']!r}"
        )
    check_fields(row, extra, where)
