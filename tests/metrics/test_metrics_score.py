"""`bench score` on run folders built by hand per docs/run-folder.md."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bench.cli.score import score_command
from bench.errors import ArgumentError, UserInputError
from bench.metrics.score_summary import figure
from bench.results import iter_jsonl
from bench.scoring import SCORES_SUMMARY, score_run

FIDELITY = ["psnr", "ssim"]


def summary(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    data = json.loads((run_dir / SCORES_SUMMARY).read_text())
    return {(row["cell_id"], row["metric"]): row for row in data["cells"]}


def rows(run_dir: Path, **match: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in iter_jsonl(run_dir / "scores.jsonl")
        if all(r.get(k) == v for k, v in match.items())
    ]


def test_fidelity_ordering_follows_noise(make_run: Callable[..., Path]) -> None:
    run = make_run()
    score_run(run, FIDELITY, progress=False)
    table = summary(run)
    for metric in FIDELITY:
        q8, q6, q4 = (table[(f"{v}__none__32x32", metric)] for v in ("Q8_0", "Q6_K", "Q4_K"))
        assert q8["mean"] > q6["mean"] > q4["mean"]
        for row in (q8, q6, q4):
            assert row["status"] == "ok" and row["n"] == 4
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]
            assert row["reference_cell_id"] == "full__none__32x32"
        ref = table[("full__none__32x32", metric)]
        assert (ref["status"], ref["role"]) == ("reference", "reference")
    image_rows = rows(run, kind="image_score", metric="psnr")
    assert len(image_rows) == 3 * 4  # three candidates, four images: per image, not pooled
    assert {r["seed"] for r in image_rows} == {1000, 1001, 1002, 1003}
    assert all(r["higher_is_better"] and r["status"] == "ok" for r in image_rows)


def test_rescoring_is_resumable_and_append_only(make_run: Callable[..., Path]) -> None:
    run = make_run()
    score_run(run, ["psnr"], progress=False)
    first = (run / "scores.jsonl").read_text()
    score_run(run, ["psnr"], progress=False)
    assert (run / "scores.jsonl").read_text() == first  # nothing recomputed or duplicated
    score_run(run, ["psnr", "ssim"], progress=False)
    text = (run / "scores.jsonl").read_text()
    assert text.startswith(first)
    assert len(rows(run, metric="ssim")) == 12 and len(rows(run, metric="psnr")) == 12
    assert len([r for r in summary(run).values() if r["metric"] == "psnr"]) == 4


def test_missing_and_corrupt_images_are_marked_and_the_rest_scored(
    make_run: Callable[..., Path],
) -> None:
    run = make_run()
    (run / "images/Q8_0__none__32x32/p0__r0.png").unlink()
    (run / "images/Q8_0__none__32x32/p1__r0.png").write_bytes(b"\x89PNG not really")
    (run / "images/full__none__32x32/p2__r0.png").unlink()
    score_run(run, ["psnr"], progress=False)
    by_prompt = {r["prompt_id"]: r for r in rows(run, cell_id="Q8_0__none__32x32")}
    assert by_prompt["p0"]["status"] == "image_missing"
    assert by_prompt["p1"]["status"] == "image_unreadable"
    assert by_prompt["p2"]["status"] == "reference_image_missing"
    assert by_prompt["p3"]["status"] == "ok" and by_prompt["p3"]["value"] > 0
    row = summary(run)[("Q8_0__none__32x32", "psnr")]
    assert row["n"] == 1 and row["failed"] == {
        "image_missing": 1,
        "image_unreadable": 1,
        "reference_image_missing": 1,
    }
    assert row["status"] == "too_few_samples"
    # Failures are retried on a re-run but not written again while they stay the same.
    before = len(rows(run))
    score_run(run, ["psnr"], progress=False)
    assert len(rows(run)) == before


def test_identical_images_psnr_inf_ssim_one(make_run: Callable[..., Path]) -> None:
    run = make_run(noise={"Q8_0": 0.0})
    score_run(run, FIDELITY, progress=False)
    psnr_rows = rows(run, cell_id="Q8_0__none__32x32", metric="psnr")
    assert all(r["value"] is None and r["identical"] for r in psnr_rows)
    table = summary(run)
    assert table[("Q8_0__none__32x32", "psnr")]["status"] == "identical"
    assert table[("Q8_0__none__32x32", "psnr")]["n_identical"] == 4
    assert table[("Q8_0__none__32x32", "ssim")]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert table[("Q8_0__none__32x32", "ssim")]["status"] == "constant"


def test_run_without_full_precision_says_so(make_run: Callable[..., Path]) -> None:
    run = make_run(variants={"Q8_0": {"name": "Q8_0", "kind": "gguf", "quant": "Q8_0"}})
    score_run(run, ["psnr", "kid"], progress=False)
    for metric in ("psnr", "kid"):
        row = summary(run)[("Q8_0__none__32x32", metric)]
        assert row["status"] == "no_reference"
        assert "no full-precision variant" in row["note"]
    assert not rows(run)


def test_reference_falls_back_to_another_offload_cell(make_run: Callable[..., Path]) -> None:
    run = make_run(offloads=("none", "model"), cell_status={"full__model__32x32": "failed"})
    score_run(run, ["psnr"], progress=False)
    table = summary(run)
    row = table[("Q8_0__model__32x32", "psnr")]
    assert row["reference_cell_id"] == "full__none__32x32"
    assert "fallback" in row["reference_note"]
    assert table[("Q8_0__none__32x32", "psnr")]["reference_cell_id"] == "full__none__32x32"
    assert table[("full__model__32x32", "psnr")]["status"] == "cell_failed"
    assert {r["reference_cell_id"] for r in rows(run, cell_id="Q8_0__model__32x32")} == {
        "full__none__32x32"
    }


def test_noise_floor_cells_are_scored_as_the_noise_floor_row(
    make_run: Callable[..., Path],
) -> None:
    variants = {
        "full": {"name": "full", "kind": "full", "dtype": "float32"},
        "full__noise": {"name": "full__noise", "kind": "full", "dtype": "float32"},
        "Q8_0": {"name": "Q8_0", "kind": "gguf", "quant": "Q8_0"},
    }
    run = make_run(variants=variants, noise={"full__noise": 0.5})
    score_run(run, ["psnr"], progress=False)
    table = summary(run)
    floor = table[("full__noise__none__32x32", "psnr")]
    assert floor["role"] == "noise_floor"
    assert floor["reference_cell_id"] == "full__none__32x32"
    assert floor["mean"] > table[("Q8_0__none__32x32", "psnr")]["mean"]
    assert table[("full__none__32x32", "psnr")]["role"] == "reference"


def test_clip_score_from_the_configured_local_model(
    make_run: Callable[..., Path], tiny_clip: Path
) -> None:
    run = make_run(clip_model=str(tiny_clip), prompts=("p0", "p1"), repeats=2)
    score_run(run, ["clip_score", "cmmd"], progress=False)
    clip_rows = rows(run, metric="clip_score")
    assert len(clip_rows) == 4 * 4  # every cell, the reference included
    assert all(r["model"] == str(tiny_clip) and 0 <= r["value"] <= 100 for r in clip_rows)
    table = summary(run)
    assert table[("full__none__32x32", "clip_score")]["status"] in ("ok", "constant")
    assert table[("full__none__32x32", "clip_score")]["n"] == 2  # repeats averaged per prompt
    assert table[("Q8_0__none__32x32", "clip_score_delta")]["reference_cell_id"] == (
        "full__none__32x32"
    )
    cmmd = table[("Q8_0__none__32x32", "cmmd")]
    assert cmmd["status"] == "too_few_samples" and cmmd["n"] == 4 and cmmd["minimum"] == 10


def test_distribution_metrics_with_enough_images(
    make_run: Callable[..., Path], tiny_clip: Path
) -> None:
    prompts = tuple(f"p{i}" for i in range(12))
    run = make_run(clip_model=str(tiny_clip), prompts=prompts, size=16)
    score_run(run, ["cmmd", "kid", "fid"], progress=False)
    table = summary(run)
    cmmd = [table[(f"{v}__none__16x16", "cmmd")] for v in ("Q8_0", "Q4_K")]
    assert all(row["status"] == "ok" and row["mean"] is not None for row in cmmd)
    # Each value beside what "no difference" gives at its n (docs/scores.md).
    assert all(row["floor"] > 0 and row["floor_method"] == "closed form" for row in cmmd)
    assert f"(floor {cmmd[0]['floor']:.3g} at n=12)" in figure(cmmd[0])  # `bench score` prints
    kid = table[("Q8_0__none__16x16", "kid")]
    assert kid["status"] == "ok" and kid["floor"] == 0.0
    assert "std" not in kid and "subset size" in kid["note"]  # 12 images: every subset is all
    fid = table[("Q8_0__none__16x16", "fid")]
    assert fid["status"] == "too_few_samples" and fid["n"] == 12
    assert fid["features"] == f"clip:{tiny_clip}"
    before = len(rows(run))
    score_run(run, ["cmmd", "kid", "fid"], progress=False)
    assert len(rows(run)) == before


def test_clip_unavailable_is_recorded_not_raised(make_run: Callable[..., Path]) -> None:
    run = make_run(clip_model=None)
    score_run(run, ["clip_score", "cmmd", "psnr"], progress=False)
    table = summary(run)
    for metric in ("clip_score", "cmmd"):
        row = table[("Q8_0__none__32x32", metric)]
        assert row["status"] == "unavailable" and "clip_model" in row["note"]
    assert table[("Q8_0__none__32x32", "psnr")]["status"] == "ok"


def test_lpips_without_backbone_is_unavailable(
    make_run: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # no backbone weights
    run = make_run()
    score_run(run, ["lpips"], progress=False)
    row = summary(run)[("Q8_0__none__32x32", "lpips")]
    if importlib.util.find_spec("torchvision") is None:
        assert row["status"] == "unavailable" and "torchvision" in row["note"]
    else:
        assert row["status"] == "unavailable" and "not found locally" in row["note"]


def test_bad_input_is_a_user_error(make_run: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        score_run(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserInputError, match="not a run folder"):
        score_run(tmp_path / "plain")
    run = make_run()
    with pytest.raises(UserInputError, match="unknown metric"):
        score_run(run, ["psnr", "sharpness"])
    assert not (run / "scores.jsonl").exists()


def test_a_bad_argument_names_the_option_or_the_parameter(make_run: Callable[..., Path]) -> None:
    """The library raises ArgumentError: `bench` prints its option, the Python API names its
    parameter; a bad `features` is refused before any metric runs, so nothing is written."""
    import bench as api

    run = make_run()
    with pytest.raises(ArgumentError) as raised:
        score_run(run, ["sharpness"])
    assert str(raised.value).startswith("--metrics: unknown metric(s) ['sharpness']; known: psnr")
    with pytest.raises(ArgumentError, match=r"^--features: expected clip or inception, got 'x'$"):
        score_run(run, ["psnr"], features="x")
    with pytest.raises(UserInputError, match=r"^score\(metrics=\.\.\.\): unknown metric"):
        api.score(run, metrics="sharpness")
    with pytest.raises(
        UserInputError, match=r"^score\(features=\.\.\.\): expected clip or inception, got 'x'$"
    ):
        api.score(run, metrics="psnr", features="x")
    assert not (run / "scores.jsonl").exists() and not (run / SCORES_SUMMARY).exists()


def test_score_command_exit_codes(make_run: Callable[..., Path], tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(score_command)
    runner = CliRunner()
    missing = runner.invoke(app, [str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "run folder not found" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    run = make_run()
    unknown = runner.invoke(app, [str(run), "--metrics", "psnr,bogus"])
    assert unknown.exit_code == 2 and "bogus" in unknown.output
    ok = runner.invoke(app, [str(run), "--metrics", "psnr", "--metrics", "ssim"])
    assert ok.exit_code == 0, ok.output
    assert (run / SCORES_SUMMARY).is_file() and len(rows(run, metric="ssim")) == 12


def test_summary_and_compare_share_the_per_prompt_mean(make_run: Callable[..., Path]) -> None:
    """Noise of 0.13 8-bit levels leaves some images identical to full precision and changes
    others: the summary's mean over prompts and `bench compare`'s per-prompt values are one
    computation (`bench.metrics.stats.prompt_means`), identical SSIM rows (1.0) included."""
    from bench.comparison.load import load_run  # the comparison reader, as `bench compare` runs it

    run = make_run(noise={"Q8_0": 0.13}, prompts=tuple(f"p{i}" for i in range(6)), repeats=2)
    score_run(run, FIDELITY, progress=False)
    cell = "Q8_0__none__32x32"
    ssim_rows = rows(run, cell_id=cell, metric="ssim")
    assert 0 < sum(bool(r.get("identical")) for r in ssim_rows) < len(ssim_rows)
    compared = load_run(run).cells[cell].scores
    table = summary(run)
    for metric in FIDELITY:
        values = compared[metric].values
        assert table[(cell, metric)]["n"] == len(values)
        assert table[(cell, metric)]["mean"] == pytest.approx(sum(values.values()) / len(values))
    assert table[(cell, "psnr")]["n_identical"] > 0  # PSNR's identical images: left out by both
