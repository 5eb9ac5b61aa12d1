"""Appending to records.jsonl never buries a torn line: a cell's child writes its own records,
and when it is killed mid-append the parent's crash records follow in the same file."""

from __future__ import annotations

import json
from pathlib import Path

from bench.results import append_jsonl, iter_jsonl


def test_an_append_after_a_torn_last_line_starts_on_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    append_jsonl(path, [{"n": 1}])
    with path.open("ab") as handle:  # what a kill mid-write leaves
        handle.write(b'{"n": 2, "wal')
    append_jsonl(path, [{"n": 3}])
    lines = path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [{"n": 1}, {"n": 3}]
    assert [r["n"] for r in iter_jsonl(path, check=lambda record, where: None)] == [1, 3]


def test_an_append_to_whole_lines_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    append_jsonl(path, [{"n": 1}, {"n": 2}])
    append_jsonl(path, [{"n": 3}])
    assert [json.loads(line) for line in path.read_bytes().splitlines()] == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
