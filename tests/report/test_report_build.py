"""build_report / `bench report` on a real scored run, a partial run and bad input."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from bench.cli.report import report_command
from bench.errors import UserInputError
from bench.reporting.build import build_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report_dir(scored_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(scored_run, tmp_path_factory.mktemp("reports") / "r")


def _cli() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("report")(report_command)
    return app


def test_writes_markdown_html_csv_and_pictures(report_dir: Path) -> None:
    names = {p.name for p in report_dir.iterdir()}
    assert {"report.md", "report.html", "table.csv", "sizing.png", "steps.png"} <= names
    assert any(n.startswith("grid-") for n in names)
    assert not [p for p in report_dir.parent.iterdir() if p.name.startswith(".")]


def test_csv_has_raw_numbers_and_gib(report_dir: Path, scored_run: Path) -> None:
    table = pd.read_csv(report_dir / "table.csv")
    assert len(table) == 3
    for column in (
        "median_s_per_image",
        "iqr_s_per_image",
        "load_s",
        "peak_host_rss_peak_bytes",
        "peak_host_rss_peak_gib",
        "transformer_bytes",
        "transformer_gib",
        "bits_per_weight",
        "psnr_mean",
        "psnr_ci_low",
    ):
        assert column in table.columns, column
    ok = table[table["status"] == "ok"]
    assert (ok["median_s_per_image"] > 0).all()
    assert ok["peak_host_rss_peak_gib"].mul(2**30).round().eq(ok["peak_host_rss_peak_bytes"]).all()
    q8 = table.set_index("cell_id").loc["Q8_0__none__64x64"]
    assert 8.0 < q8["bits_per_weight"] < 10.0
    assert q8["psnr_mean"] > 20  # Q8_0 is close to full precision, even on random weights


def test_failed_cells_show_their_exception_type(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    # On a CPU-only machine model offload needs an accelerator; on a GPU it runs.
    table = pd.read_csv(report_dir / "table.csv").set_index("cell_id")
    status = table.loc["Q8_0__model__64x64", "status"]
    if status != "ok":
        error = table.loc["Q8_0__model__64x64", "error_type"]
        assert f"| {status}: {error} |" in md
        assert "### Cells that did not run fully" in md
        assert "Q8_0__model__64x64" in md.split("### Cells that did not run fully")[1]


def test_main_table_has_units_and_quality(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| variant |"))
    for text in ("(GiB)", "s/image", "load (s)", "bits/weight", "PSNR vs full (dB)"):
        assert text in header
    assert "host RSS" in header and "not VRAM" in header  # CPU run labelled as such
    if "energy/image (J)" not in header:  # no NVML here: the column is explained instead
        assert "- Energy per image: energy not measured" in md
    row = next(line for line in md.splitlines() if line.startswith("| Q8_0 | none |"))
    # Two prompts: the mean, and the table says why there is no interval (issue 27).
    assert "PSNR vs full (dB) (mean over prompts, no interval)" in header
    assert re.search(r"\d+\.\d+ \(n=2 prompts: no interval below 4\)", row), row
    assert "95%" not in header
    full = next(line for line in md.splitlines() if line.startswith("| full | none |"))
    assert "reference" in full


def test_a_two_prompt_run_says_what_it_can_and_cannot_show(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    note = next(line for line in md.splitlines() if "This run has 2 prompt(s)" in line)
    assert "It can show each cell's mean fidelity" in note
    assert "a 95% interval (none below 4 prompts" in note
    assert "a quality verdict from `bench compare` (it needs 6 prompts)" in note


def test_interval_label_names_the_method(copy_run: Callable[..., Path], tmp_path: Path) -> None:
    """A summary with intervals: the header says 95% and how they were made; one written by
    the BCa bootstrap before says so, and the notes say `bench score` recomputes it."""
    import json

    run = copy_run()
    summary = json.loads((run / "scores_summary.json").read_text())
    for row in summary["cells"]:
        if row["metric"] == "psnr" and row["mean"] is not None and row["role"] == "candidate":
            row.update(ci_low=row["mean"] - 1, ci_high=row["mean"] + 1, status="ok")
            row["method"] = "bootstrap-bca 95% over prompts"
    (run / "scores_summary.json").write_text(json.dumps(summary))
    md = (build_report(run, tmp_path / "r") / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| variant |"))
    assert "PSNR vs full (dB) [95% CI, bootstrap-bca]" in header
    assert "Brackets from bootstrap-bca" in md and "`bench score` on this run" in md


def test_synthetic_and_claims_sections(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    assert "random weights" in md and "quantization error only" in md
    claims = md.split("## Claims checked")[1].split("## Published figures")[0]
    rows = [line for line in claims.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 6
    assert "KeyError" in claims and "3×" in claims
    assert "not measured" in claims  # energy at least, on this machine
    published = md.split("## Published figures")[1]
    assert "random weights" in published and "60 steps" in published


def test_html_is_self_contained(report_dir: Path) -> None:
    html = (report_dir / "report.html").read_text()
    sources = re.findall(r"<img src='([^']*)'", html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in html and "https://" not in html
    assert "id='results-table'" in html


def test_partial_run_killed_midway_unscored(copy_run: Callable[..., Path], tmp_path: Path) -> None:
    def keep(record: dict) -> bool:  # the kill happened before the Q8_0 cells
        return not record["cell_id"].startswith("Q8_0")

    run = copy_run(
        drop_scores=True,
        keep_record=keep,
        manifest_edit=lambda m: m.update(finished_at=None),
        torn_tail=True,
    )
    out = build_report(run, tmp_path / "partial")
    md = (out / "report.md").read_text()
    assert "Unfinished run" in md and "--resume" in md
    assert "| Q8_0 | none | not run (run unfinished) |" in md
    assert "| not scored |" in md  # the quality column says so for every cell
    assert "_not scored: no scores_summary.json" in md  # quality plot replaced by a sentence
    table = pd.read_csv(out / "table.csv")
    assert set(table.loc[table["variant"] == "Q8_0", "status"]) == {"missing"}


def test_run_with_no_records_at_all(copy_run: Callable[..., Path], tmp_path: Path) -> None:
    run = copy_run(drop_scores=True, keep_record=lambda r: False)
    out = build_report(run, tmp_path / "empty")
    md = (out / "report.md").read_text()
    assert "no cell produced" in md
    assert "| full | none | not run |" in md


def test_not_a_run_folder_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(_cli(), [str(tmp_path), "--out", str(out)])
    assert result.exit_code == 2
    assert "not a run folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_raises_user_input_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        build_report(tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failure_midway_leaves_nothing(
    scored_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.reporting import build

    def boom(*args: object, **kwargs: object) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(build, "render_html", boom)
    with pytest.raises(RuntimeError):
        build_report(scored_run, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_rebuild_replaces_the_old_report(scored_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("an earlier report")
    (out / "stale.txt").write_text("old")
    build_report(scored_run, out)
    assert not (out / "stale.txt").exists()
    assert (out / "report.html").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_cli_default_out_is_reports_run_id(
    scored_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(_cli(), [str(scored_run)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reports" / scored_run.name / "report.html").is_file()


def test_image_grids_state_their_scale(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    images = md.split("## Images")[1].split("## Claims checked")[0]
    assert images.count("![Prompt") == 2  # one grid per prompt
    assert "Same seed" in images and "clipped at 32 of 255 levels (×8)" in images
    assert re.search(r"Q8_0: mean \d+\.\d+, max \d+ levels", images)


def test_manifest_with_broken_cells_is_bad_input(
    copy_run: Callable[..., Path], tmp_path: Path
) -> None:
    run = copy_run(manifest_edit=lambda m: m["cells"][0].pop("variant"))
    with pytest.raises(UserInputError, match=r"cells\[0\] lacks variant"):
        build_report(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_main_table_names_each_cells_backend_and_scheme(report_dir: Path) -> None:
    """The backend column comes from the backends registry, not from the variant's name."""
    md = (report_dir / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| variant |"))
    assert "| status | backend | quantization |" in header
    row = next(line for line in md.splitlines() if line.startswith("| Q8_0 | none |"))
    assert "| gguf | Q8_0 |" in row
    csv = (report_dir / "table.csv").read_text().splitlines()
    assert "backend" in csv[0].split(",") and "quantization" in csv[0].split(",")
