"""`build_report`: run folder in, report folder out, all or nothing.

Everything is written into a hidden temporary folder beside the destination and renamed into
place at the end, so a failure (bad input, a plot that raises, a full disk) leaves neither a
half-written report nor a damaged earlier one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench.errors import ArgumentError
from bench.reporting.data import load_run
from bench.reporting.document import TABLE_CSV, build_document
from bench.reporting.html import render_html
from bench.reporting.markdown import render_markdown

REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def default_out_dir(run_dir: Path) -> Path:
    """reports/<run-id>, relative to the working directory (the project's layout)."""
    return Path("reports") / Path(run_dir).resolve().name


def build_report(run_dir: Path, out_dir: Path) -> Path:
    """Write report.md, report.html, table.csv and the PNGs into `out_dir`; returns `out_dir`.

    Raises UserInputError (before anything is written) when `run_dir` is not a run folder, and
    ArgumentError naming `out` when `out_dir` is a file or a folder of something else than a
    report. An earlier report's folder is replaced whole once the new report is complete.
    """
    out_dir = check_report_folder(Path(out_dir))
    run = load_run(Path(run_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        report = build_document(run, tmp)
        report.raw_table.to_csv(tmp / TABLE_CSV, index=False)
        (tmp / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")
        (tmp / REPORT_HTML).write_text(render_html(report, tmp), encoding="utf-8")
        _replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_report_folder(target: Path) -> Path:
    """A new or empty folder, or an earlier report's, which a report replaces whole; a file or
    any other folder is refused (replacing it would delete what the user keeps there)."""
    if target.exists() and not target.is_dir():
        raise ArgumentError("out", f"{target} is a file; expected a report folder")
    if target.is_dir() and any(target.iterdir()) and not (target / REPORT_MD).is_file():
        raise ArgumentError(
            "out",
            f"{target} holds files but no {REPORT_MD}: a report replaces its folder whole, "
            "so give a new folder (or an earlier report's)",
        )
    return target


def _replace(new: Path, dest: Path) -> None:
    """Move `new` to `dest`; an old `dest` is moved aside first and removed only afterwards."""
    os.chmod(new, 0o755)
    if not dest.exists():
        os.replace(new, dest)
        return
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
