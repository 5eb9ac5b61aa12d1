"""The public API (bench/__init__.py, bench/api.py): the README's example on a tiny real run,
and each function against the command it stands for, on recorded run folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import bench
from bench.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "compare" / "fixtures"
QUIET, BUSY = FIXTURES / "quiet-128", FIXTURES / "busy-128"

# configs/tiny.yaml cut down (one offload mode, 64 px, 1 step, 2 images per cell), with the
# variant names the README's example asks for, so the example runs as written.
SMALL_TINY = {
    "name": "tiny",
    "model": {"source": "synthetic", "preset": "tiny", "seed": 0},
    "variants": [
        {"name": "full-fp32", "kind": "full", "dtype": "float32"},
        {"name": "Q8_0", "kind": "gguf", "quant": "Q8_0", "compute_dtype": "float32"},
    ],
    "offload": ["none"],
    "prompts": [
        {"id": "city", "text": "a futuristic city at sunset with neon lights"},
        {"id": "chip", "text": "macro photo of a chip with blue light"},
    ],
    "repeats": 1,
    "seed": 42,
    "height": 64,
    "width": 64,
    "steps": 1,
    "max_sequence_length": 16,
    "warmup": 0,
    "device": "cpu",
}


def readme_example() -> str:
    """The first Python block of the README's "Python API" section, as printed there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README: no python block under ## Python API"
    return match.group(1)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_readme_example_runs_as_written(
    bench_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text(yaml.safe_dump(SMALL_TINY))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    out = capsys.readouterr().out

    run_dir, again = Path(namespace["run_dir"]), Path(namespace["again"])
    assert run_dir.parent == again.parent == Path("results") and run_dir != again
    run = namespace["run"]
    records = jsonl(run_dir / "records.jsonl")
    images = [r for r in records if r["kind"] == "image"]
    assert sorted(run.cells["variant"]) == ["Q8_0", "full-fp32"]
    assert list(run.cells["status"]) == ["ok", "ok"]
    assert len(run.images) == len(images) == 4
    assert sorted(run.images["wall_s"]) == sorted(r["wall_s"] for r in images)
    scores = jsonl(run_dir / "scores.jsonl")
    assert len(run.scores) == len(scores) > 0
    assert set(run.scores["metric"]) == {"psnr", "ssim"}
    q8_psnr = [r["value"] for r in scores if r["variant"] == "Q8_0" and r["metric"] == "psnr"]
    assert len(q8_psnr) == 2 and all(v is not None and v > 0 for v in q8_psnr)
    report = Path("reports") / run_dir.name
    assert {"report.html", "report.md", "table.csv"} <= {p.name for p in report.iterdir()}
    assert str(report / "report.html") in out
    comparison = namespace["comparison"]
    assert comparison.comparable and comparison.exit_code in (0, 1)
    assert {c.cell_id for c in comparison.cells} == set(run.cells["cell_id"])
    options = bench.size(model="flux-dev", vram="16GiB")
    for option in options[:3]:
        assert f"{option.variant} {option.offload}" in out


def test_load_run_tables_match_the_records() -> None:
    run = bench.load_run(QUIET)
    manifest = json.loads((QUIET / "manifest.json").read_text())
    records = jsonl(QUIET / "records.jsonl")
    images = [r for r in records if r["kind"] == "image"]
    assert list(run.cells["cell_id"]) == [c["cell_id"] for c in manifest["cells"]]
    assert len(run.images) == len(images)
    by_key = {(r["cell_id"], r["prompt_id"], r["repeat"]): r for r in images}
    for row in run.images.itertuples():
        record = by_key[(row.cell_id, row.prompt_id, row.repeat)]
        assert row.wall_s == record["wall_s"] and row.step_s == record["step_s"]
        assert row.memory_host_rss_peak_bytes == record["memory"]["host_rss_peak_bytes"]
    for cell in run.cells.itertuples():
        walls = sorted(r["wall_s"] for r in images if r["cell_id"] == cell.cell_id)
        assert cell.n == len(walls)
        assert cell.median_s == pytest.approx(float(np.median(walls)))
    # Unscored: an empty table that still has the score columns.
    assert run.scores.empty and {"cell_id", "metric", "value"} <= set(run.scores.columns)


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(UserInputError):
        bench.load_run(tmp_path)


def test_compare_returns_the_result_the_command_exits_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.cli.compare import compare_command

    comparison = bench.compare(QUIET, BUSY)
    assert capsys.readouterr().out == ""  # an object, not a printout
    assert comparison.comparable
    assert {c.cell_id for c in comparison.cells} == {
        c["cell_id"] for c in json.loads((QUIET / "manifest.json").read_text())["cells"]
    }
    import typer

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(compare_command)
    result = CliRunner().invoke(app, [str(QUIET), str(BUSY)])
    assert result.exit_code == comparison.exit_code


def test_compare_bad_thresholds_name_the_parameter() -> None:
    with pytest.raises(
        UserInputError, match=r"^compare\(time_factor=\.\.\.\): 0\.9: expected a fa"
    ):
        bench.compare(QUIET, BUSY, time_factor=0.9)
    with pytest.raises(UserInputError, match=r"^compare\(memory_bands=\.\.\.\): 'bogus=1\.1'"):
        bench.compare(QUIET, BUSY, memory_bands={"bogus": 1.1})
    with pytest.raises(UserInputError, match=r"^compare\(memory_min_mib=\.\.\.\): .*got inf"):
        bench.compare(QUIET, BUSY, memory_min_mib=float("inf"))  # was an OverflowError
    with pytest.raises(UserInputError, match=r"^compare\(quality_margins=\.\.\.\): psnr: .*nan"):
        bench.compare(QUIET, BUSY, quality_margins={"psnr": float("nan")})  # never a regression
    loose = bench.compare(QUIET, BUSY, quality_margins={"psnr": 0.5})
    assert loose.thresholds.quality_margins["psnr"] == 0.5


def test_size_ranks_options_like_the_command(tiny_pipeline: Path) -> None:
    from bench.sizing.options import size_options

    kwargs = {"model": str(tiny_pipeline), "quant": ["Q8_0"], "height": 256, "width": 256}
    nothing = bench.size(vram="1MiB", **kwargs)
    assert len(nothing) == 2 * 5 and not any(o.fits for o in nothing)
    roomy = bench.size(gpu="RTX 4090", **kwargs)
    fits = [o.fits for o in roomy]
    assert any(fits) and fits == sorted(fits, reverse=True)  # fitting options first
    payload = size_options(gpu="RTX 4090", **kwargs).to_json()
    assert [(o["variant"], o["offload"]) for o in payload["fits"]] == [
        (o.variant, o.offload) for o in roomy if o.fits
    ]
    with pytest.raises(UserInputError, match=r"^size\(vram=\.\.\.\): '12 potatoes'"):
        bench.size(vram="12 potatoes")


def test_api_names_stay_functions_after_their_stage_modules_load() -> None:
    import bench.comparison.verdicts
    import bench.reporting.build
    import bench.scoring
    import bench.sizing.options

    assert bench.score.__module__ == "bench.api"
    for name in ("run", "resume", "load_run", "score", "report", "compare", "size"):
        assert callable(getattr(bench, name)) and getattr(bench, name).__module__ == "bench.api"


def test_a_bare_string_is_one_name_never_its_characters(tmp_path: Path) -> None:
    """`only="full-fp32"` and `metrics="psnr"` are one name each: the unknown one is named
    whole, with the parameter (no `--only` to a Python caller), and nothing is written."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(SMALL_TINY))
    out = tmp_path / "results"
    with pytest.raises(UserInputError) as info:
        bench.run(config, only="full-fp32x", out=out)
    assert str(info.value).startswith("run(only=...): unknown variant(s) ['full-fp32x']")
    assert not out.exists()
    with pytest.raises(UserInputError, match=r"^run\(only=\.\.\.\): expected a string or a list"):
        bench.run(config, only=3, out=out)  # type: ignore[arg-type]
    run = tmp_path / "run"
    shutil.copytree(QUIET, run)
    scores = bench.score(run, metrics="psnr")
    assert {row["metric"] for row in jsonl(scores)} == {"psnr"}
    with pytest.raises(
        UserInputError, match=r"^score\(metrics=\.\.\.\): unknown metric\(s\) \['ps"
    ):
        bench.score(run, metrics="psnrx")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vram": 16}, r"^size\(vram=\.\.\.\): expected a size as text, such as '16GiB'"),
        ({"height": "64"}, r"^size\(height=\.\.\.\): expected a whole number .* \(got '64'\)"),
        ({"height": 15}, r"^size\(height=\.\.\.\): expected a whole number from 16"),
        (
            {"model": "wan2.2-ti2v-5b", "height": 48},
            r"^size\(height=\.\.\.\): expected a multiple of 32 .* nearest valid: 32 or 64",
        ),
        ({"num_frames": 5}, r"^size\(num_frames=\.\.\.\): FLUX\.1 makes images, not videos"),
        ({"batch": 0}, r"^size\(batch=\.\.\.\): expected a whole number from 1 to 1024"),
        ({"margin": float("nan")}, r"^size\(margin=\.\.\.\): expected a number from 0 to 0\.9"),
        ({"quant": "Q9"}, r"^size\(quant=\.\.\.\): 'Q9': not a ggml type"),
        ({"offload": "group-block0"}, r"^size\(offload=\.\.\.\): 'group-block0': blocks per"),
        ({"vram": "8GiB", "gpu": "RTX 4090"}, r"^size\(gpu=\.\.\.\): give either a VRAM size"),
    ],
    ids=["vram-int", "height-str", "height-small", "height-wan22", "frames-image", "batch",
         "margin-nan", "quant-one-string", "offload-blocks", "vram-and-gpu"],
)  # fmt: skip
def test_size_names_the_parameter_of_a_bad_value(kwargs: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message) as info:
        bench.size(**kwargs)
    assert "--" not in str(info.value)  # no command-line option named to a Python caller


def test_every_api_function_names_a_mistyped_parameter(tmp_path: Path) -> None:
    cases = [
        (lambda: bench.load_run(5), r"^load_run\(run_dir=\.\.\.\): expected a path"),
        (lambda: bench.report(QUIET, out=3), r"^report\(out=\.\.\.\): expected a path"),
        (lambda: bench.resume(None), r"^resume\(run_dir=\.\.\.\): expected a path"),
        (lambda: bench.run(None), r"^run\(config=\.\.\.\): give a config file"),
        (lambda: bench.run("c.yaml", console="x"), r"^run\(console=\.\.\.\): expected a rich"),
        (lambda: bench.score(QUIET, progress="no"), r"^score\(progress=\.\.\.\): expected True"),
        (lambda: bench.compare(QUIET, BUSY, force=1), r"^compare\(force=\.\.\.\): expected True"),
        (lambda: bench.compare(QUIET, BUSY, alpha="0.1"), r"^compare\(alpha=\.\.\.\): expected a"),
    ]
    for call, message in cases:
        with pytest.raises(UserInputError, match=message):
            call()
    assert not (tmp_path / "results").exists()
