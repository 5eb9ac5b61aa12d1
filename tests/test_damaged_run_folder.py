"""Fault injection on run folders: hand-edited or damaged files are one line, never a traceback.

A records line that is JSON but not an object, bytes that are not UTF-8, a record without a key
every stage indexes, a manifest that is a list or holds an invalid config: `bench score`,
`bench report`, `bench compare` and `bench run --resume` (real processes) each answer with one
`error:` line naming the file (and line), exit 2, and write nothing. Then every key of every
kind of entry is deleted or given a wrong type, and the stages must still fail only with
UserInputError.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import bench
from bench.cells import expand_cells, expand_images
from bench.config import validate_config
from bench.errors import RunFolderError, UserInputError
from tests.runner.sample_config import BASE_CONFIG

SIZE = 32


def _png(path: Path, seed: int, noise: float) -> None:
    base = np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3))
    jitter = np.random.default_rng(seed + 1).normal(0, noise, base.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(base + jitter, 0, 255).astype(np.uint8)).save(path)


def write_run(root: Path) -> Path:
    """A complete run folder as `bench run` writes it (docs/run-folder.md), without a pipeline:
    the config is valid whole, so `--resume` gets as far as reading the records."""
    config = validate_config({**BASE_CONFIG, "height": SIZE, "width": SIZE}, "test")
    cells = expand_cells(config)
    images = expand_images(config, list(config.prompts))  # type: ignore[arg-type]
    run_dir = root / "damaged-20260101-000000"
    run_dir.mkdir(parents=True)
    manifest = {
        "schema": 1,
        "run_id": run_dir.name,
        "created_at": "2026-01-01T00:00:00.000+00:00",
        "finished_at": "2026-01-01T00:01:00.000+00:00",
        "config": config.model_dump(mode="json"),
        "config_hash": "0" * 16,
        "config_path": None,
        "only": None,
        "prompts": [{"id": p.id, "text": p.text} for p in config.prompts],  # type: ignore[union-attr]
        "images": [{"prompt_id": i.prompt_id, "repeat": i.repeat, "seed": i.seed} for i in images],
        "cells": [
            {
                "cell_id": c.cell_id,
                "variant": c.variant.name,
                "offload": c.offload.label,
                "height": SIZE,
                "width": SIZE,
                "variant_spec": c.variant.model_dump(mode="json"),
                "offload_spec": c.offload.model_dump(mode="json"),
                "transformer_file": None,
            }
            for c in cells
        ],
        "base_model": {"source": "synthetic", "preset": "tiny", "synthetic": True},
        "environment": {},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    records = []
    for n, cell in enumerate(manifest["cells"]):
        head = {"schema": 1, "run_id": run_dir.name, "time": "2026-01-01T00:00:00.000+00:00"}
        head |= {k: cell[k] for k in ("cell_id", "variant", "offload", "height", "width")}
        memory = {"load": {"host_rss_peak_bytes": 1 << 30}, "baseline": {"host_rss_bytes": 1}}
        records.append(
            {**head, "kind": "cell", "status": "ok", "error": None, "device": "cpu"}
            | {"load_s": 1.0, "first_call_s": None, "warmup_s": [], "memory": memory}
        )
        for image in manifest["images"]:
            rel = f"images/{cell['cell_id']}/{image['prompt_id']}__r{image['repeat']}.png"
            _png(run_dir / rel, image["seed"] % 1000, noise=3.0 * n)
            records.append(
                {**head, "kind": "image", **image, "status": "ok", "error": None, "image": rel}
                | {"wall_s": 0.5, "step_s": [0.1] * 3, "memory": {"host_rss_peak_bytes": 2}}
            )
    with (run_dir / "records.jsonl").open("w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return run_dir


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bench.scoring import score_run

    run_dir = write_run(tmp_path_factory.mktemp("damaged"))
    score_run(run_dir, ["psnr"], progress=False)
    assert (run_dir / "scores.jsonl").stat().st_size > 0
    return run_dir


@pytest.fixture
def copy_run(scored_run: Path, tmp_path: Path) -> Callable[[str], Path]:
    def copy(name: str) -> Path:
        dest = tmp_path / name / scored_run.name
        shutil.copytree(scored_run, dest)
        return dest

    return copy


def _edit_line(path: Path, number: int, edit: Callable[[bytes], bytes]) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[number - 1] = edit(lines[number - 1].rstrip(b"\n")) + b"\n"
    path.write_bytes(b"".join(lines))


def _drop_key(key: str) -> Callable[[bytes], bytes]:
    def edit(line: bytes) -> bytes:
        record = json.loads(line)
        del record[key]
        return json.dumps(record).encode()

    return edit


def _set_key(key: str, value: Any) -> Callable[[bytes], bytes]:
    def edit(line: bytes) -> bytes:
        return json.dumps({**json.loads(line), key: value}).encode()

    return edit


def _edit_manifest(run_dir: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    path = run_dir / "manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _set_steps(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["config"]["steps"] = "many"
    return manifest


# name: (damage, what the one error line must name, commands that read the damaged file)
ALL = ("score", "report", "compare", "resume")
DAMAGE: dict[str, tuple[Callable[[Path], None], tuple[str, ...], tuple[str, ...]]] = {
    "record-not-an-object": (
        lambda d: _edit_line(d / "records.jsonl", 2, lambda _: b"[1, 2]"),
        ("records.jsonl line 2", "JSON object"),
        ALL,
    ),
    "record-not-utf8": (
        lambda d: _edit_line(d / "records.jsonl", 2, lambda b: b.replace(b'"ok"', b'"\xffk"')),
        ("records.jsonl line 2", "UTF-8"),
        ALL,
    ),
    "record-missing-key": (
        lambda d: _edit_line(d / "records.jsonl", 3, _drop_key("cell_id")),
        ("records.jsonl line 3", "'cell_id'"),
        ALL,
    ),
    # A video record's frame count names its frame files: one a reader would list without end.
    "record-absurd-frame-count": (
        lambda d: _edit_line(d / "records.jsonl", 3, _set_key("num_frames", 10**9)),
        ("records.jsonl line 3", "'num_frames'", "1 to 1025"),
        ALL,
    ),
    "record-cut-mid-file": (
        lambda d: _edit_line(d / "records.jsonl", 2, lambda b: b[: len(b) // 2]),
        ("records.jsonl line 2", "not valid JSON"),
        ALL,
    ),
    "manifest-a-list": (
        lambda d: (d / "manifest.json").write_text("[]"),
        ("manifest.json", "JSON object"),
        ALL,
    ),
    "manifest-invalid-config": (
        lambda d: _edit_manifest(d, _set_steps),
        ("manifest.json", "config.steps", "'many'"),
        ALL,
    ),
    "score-row-not-an-object": (
        lambda d: _edit_line(d / "scores.jsonl", 1, lambda _: b"42"),
        ("scores.jsonl line 1", "JSON object"),
        ("score", "compare"),
    ),
}


def bench_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A real `bench` process of the package under test (its tree first on the path)."""
    tree = str(Path(bench.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": tree, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def _command(name: str, run_dir: Path, clean: Path, out: Path) -> list[str]:
    return {
        "score": ["score", str(run_dir), "--metrics", "psnr"],
        "report": ["report", str(run_dir), "--out", str(out)],
        "compare": ["compare", str(clean), str(run_dir), "--force"],
        "resume": ["run", "--resume", str(run_dir), "--no-score"],
    }[name]


# Each command in a real process, for one kind of damage each: what the process adds (exit
# status 2, the one `error:` line, no traceback) is the command's, whatever the damage; every
# (damage, stage) pair runs in process below.
CLI_CASES = [
    ("score-row-not-an-object", "score"),
    ("record-not-utf8", "report"),
    ("record-missing-key", "compare"),
    ("manifest-invalid-config", "resume"),
]


def _files(run_dir: Path) -> dict[Path, bytes]:
    """The folder's files, but for the run lock a resume takes (and keeps) by design."""
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "run.lock"}


@pytest.mark.slow
@pytest.mark.parametrize(("damage", "command"), CLI_CASES, ids=[f"{d}-{c}" for d, c in CLI_CASES])
def test_damaged_folder_is_one_line_exit_2(
    copy_run: Callable[[str], Path], tmp_path: Path, damage: str, command: str
) -> None:
    clean = copy_run("clean")
    run_dir = copy_run("damaged")
    harm, needles, _ = DAMAGE[damage]
    harm(run_dir)
    before = _files(run_dir)
    out = tmp_path / "report-out"
    result = bench_cli(*_command(command, run_dir, clean, out), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    # Nothing half-written: the folder is as it was, and no report folder appeared.
    assert _files(run_dir) == before
    assert not out.exists()


def _stage(name: str, run_dir: Path, clean: Path, out: Path) -> Callable[[], Any]:
    from bench.comparison.verdicts import Thresholds, compare_runs
    from bench.reporting.build import build_report
    from bench.runner.executor import resume_run
    from bench.scoring import score_run

    return {
        "score": lambda: score_run(run_dir, ["psnr"], progress=False),
        "report": lambda: build_report(run_dir, out),
        "compare": lambda: compare_runs(clean, run_dir, Thresholds(), force=True),
        "resume": lambda: resume_run(run_dir),
    }[name]


IN_PROCESS = [(d, c) for d, (_, _, commands) in DAMAGE.items() for c in commands]


@pytest.mark.parametrize(("damage", "stage"), IN_PROCESS, ids=[f"{d}-{c}" for d, c in IN_PROCESS])
def test_every_damage_through_every_stage(
    copy_run: Callable[[str], Path], tmp_path: Path, damage: str, stage: str
) -> None:
    clean = copy_run("clean")
    run_dir = copy_run("damaged")
    harm, needles, _ = DAMAGE[damage]
    harm(run_dir)
    before = _files(run_dir)
    with pytest.raises(UserInputError) as exc:
        _stage(stage, run_dir, clean, tmp_path / "report-out")()
    message = str(exc.value)
    assert "\n" not in message and all(n in message for n in needles), message
    assert _files(run_dir) == before and not (tmp_path / "report-out").exists()


def test_clean_copy_is_read_by_every_stage(scored_run: Path, tmp_path: Path) -> None:
    """The control: the undamaged folder passes the same readers."""
    from bench.comparison.verdicts import Thresholds, compare_runs
    from bench.reporting.build import build_report

    build_report(scored_run, tmp_path / "report")
    assert compare_runs(scored_run, scored_run, Thresholds()).exit_code == 0


WRONG: tuple[Any, ...] = (None, "x", [], {}, True, -1)


def _mutations(run_dir: Path) -> Iterator[tuple[str, str, str]]:
    """(name, file, new content): every key of each kind of entry deleted or mistyped."""
    records = (run_dir / "records.jsonl").read_text().splitlines()
    for number in (1, 2):  # a cell record and an image record
        record = json.loads(records[number - 1])
        for key in record:
            for value in ("<deleted>", *WRONG):
                changed = dict(record)
                if value == "<deleted>":
                    del changed[key]
                else:
                    changed[key] = value
                lines = [*records[: number - 1], json.dumps(changed), *records[number:]]
                yield f"records:{number}:{key}={value!r}", "records.jsonl", "\n".join(lines) + "\n"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    paths: list[tuple[Any, ...]] = [(k,) for k in manifest]
    for key in ("cells", "images", "prompts"):
        paths += [(key,), (key, 0)] + [(key, 0, k) for k in manifest[key][0]]
    paths += [("config", k) for k in manifest["config"]]
    for path in paths:
        for value in ("<deleted>", *WRONG):
            changed = copy.deepcopy(manifest)
            node = changed
            for part in path[:-1]:
                node = node[part]
            if value == "<deleted>":
                del node[path[-1]]
            else:
                node[path[-1]] = value
            yield f"manifest:{path}={value!r}", "manifest.json", json.dumps(changed)
    rows = (run_dir / "scores.jsonl").read_text().splitlines()
    row = json.loads(rows[0])
    for key in row:
        for value in ("<deleted>", *WRONG):
            changed = dict(row)
            if value == "<deleted>":
                del changed[key]
            else:
                changed[key] = value
            yield (
                f"scores:{key}={value!r}",
                "scores.jsonl",
                "\n".join([json.dumps(changed), *rows[1:]]),
            )


def test_every_mistyped_or_missing_key_is_a_user_error(scored_run: Path, tmp_path: Path) -> None:
    """Score and compare (in process) over each mutation fail only with a one-line user error;
    mutations the stages tolerate (an optional key removed) may pass."""
    from bench.comparison.verdicts import Thresholds, compare_runs
    from bench.scoring import score_run

    refused = total = 0
    for name, file, content in _mutations(scored_run):
        total += 1
        run_dir = tmp_path / "m" / scored_run.name
        shutil.rmtree(tmp_path / "m", ignore_errors=True)
        shutil.copytree(scored_run, run_dir)
        (run_dir / file).write_text(content)
        for stage in (
            lambda d: score_run(d, ["psnr"], progress=False),
            lambda d: compare_runs(scored_run, d, Thresholds(), force=True),
        ):
            try:
                stage(run_dir)
            except UserInputError as exc:
                refused += 1
                assert "\n" not in str(exc) and file in str(exc), (name, str(exc))
            except Exception as exc:  # the failure this test exists to find
                raise AssertionError(f"{name}: {type(exc).__name__}: {exc}") from exc
    assert total > 400 and refused > total  # most mutations break something, in both stages


def test_torn_last_line_is_skipped_but_a_damaged_middle_line_is_not(tmp_path: Path) -> None:
    from bench.results import iter_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"b": 2}\n{"c": ')
    assert list(iter_jsonl(path)) == [{"a": 1}, {"b": 2}]
    path.write_bytes(b'{"a": 1}\n{"c": \n{"b": 2}\n')
    with pytest.raises(RunFolderError, match=r"rows.jsonl line 2: not valid JSON"):
        list(iter_jsonl(path))
    path.write_bytes(b'{"a": 1}\n\n"text"\n')
    with pytest.raises(RunFolderError, match=r"line 3: expected a JSON object, found str"):
        list(iter_jsonl(path))
    path.write_bytes(b"[" * 100_000 + b"\n")
    with pytest.raises(RunFolderError, match=r"line 1: not valid JSON \(nested too deeply\)"):
        list(iter_jsonl(path))
    path.unlink()
    path.mkdir()
    with pytest.raises(RunFolderError, match="not a file"):
        list(iter_jsonl(path))
    assert list(iter_jsonl(tmp_path / "absent.jsonl")) == []


def test_a_line_longer_than_the_limit_is_refused_before_it_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.results as results

    monkeypatch.setattr(results, "MAX_JSONL_LINE_BYTES", 1000)
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": "' + "x" * 5000 + '"}\n')
    with pytest.raises(RunFolderError, match="line 1: longer than 1000 bytes"):
        list(results.iter_jsonl(path))


def test_huge_manifest_is_refused_by_its_size(scored_run: Path, tmp_path: Path) -> None:
    from bench.limits import MAX_MANIFEST_BYTES
    from bench.results import read_manifest

    run_dir = tmp_path / scored_run.name
    shutil.copytree(scored_run, run_dir)
    with (run_dir / "manifest.json").open("r+b") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: nothing is written, nothing read
    with pytest.raises(RunFolderError, match=str(MAX_MANIFEST_BYTES)):
        read_manifest(run_dir)


def _png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header is patched to claim width x height pixels."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize(
    ("claimed", "status", "note"),
    [
        # PIL only warns below 2 x 89M pixels, and would decode 432 MB of pixels.
        ((12_000, 12_000), "image_wrong_size", "12000x12000"),
        ((SIZE * 2, SIZE), "image_wrong_size", f"{SIZE * 2}x{SIZE}"),
        # Above, PIL refuses to open it: a status too, not a traceback.
        ((50_000, 50_000), "image_unreadable", "DecompressionBombError"),
    ],
)
def test_an_image_not_of_its_records_size_is_a_status(
    copy_run: Callable[[str], Path], claimed: tuple[int, int], status: str, note: str
) -> None:
    """A damaged PNG claiming other dimensions than its cell's (a decompression bomb, or just
    another size) is a status read from its header, without decoding a pixel."""
    from bench.metrics.run_view import read_run
    from bench.scoring import score_run

    run_dir = copy_run("bomb")
    (run_dir / "scores.jsonl").unlink()  # scored ok rows are never recomputed
    view = read_run(run_dir)
    cell = view.cells[1]
    image = view.images[0]
    rel = view.image_paths[(cell["cell_id"], image["prompt_id"], image["repeat"])]
    (run_dir / str(rel)).write_bytes(_png_claiming(*claimed))
    score_run(run_dir, ["psnr"], progress=False)
    rows = [json.loads(line) for line in (run_dir / "scores.jsonl").read_text().splitlines()]
    mine = [
        r
        for r in rows
        if (r["cell_id"], r["prompt_id"], r["repeat"])
        == (cell["cell_id"], image["prompt_id"], image["repeat"])
    ]
    assert mine[-1]["status"] == status, mine[-1]
    assert note in mine[-1]["note"]


def test_report_grids_read_images_the_same_way(copy_run: Callable[[str], Path]) -> None:
    """The report's image grids go through the scorer's reader: a decompression bomb or a PNG
    of another size leaves a gap in the grid, not a traceback or gigabytes of pixels."""
    from bench.reporting.build import build_report

    run_dir = copy_run("bomb-report")
    images = sorted((run_dir / "images").rglob("*.png"))
    images[0].write_bytes(_png_claiming(50_000, 50_000))
    images[1].write_bytes(_png_claiming(12_000, 12_000))
    out = build_report(run_dir, run_dir.parent / "report")
    assert (out / "report.html").is_file()
