"""A video family through every stage: config keys, the run folder's frames and video files,
per-video timing, scores with frame counts, report frame strips, resume of a missing video.

The sweep is configs/tiny-wan.yaml cut to what the assertions need (three variants, offload
none, 5 frames of 64 px, 2 steps) so it fits a test on two shared cores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from bench.config import config_hash, validate_config
from bench.errors import ConfigError
from bench.results import frame_paths, image_records, read_records

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "tiny-wan.yaml"
FRAMES = 5


def tiny_wan(**changes: Any) -> dict[str, Any]:
    config = yaml.safe_load(CONFIG.read_text())
    config["prompts"] = {"file": str(CONFIG.parent / config["prompts"]["file"])}
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bench.runner.executor import run_config

    folder = tmp_path_factory.mktemp("tiny-wan")
    config = tiny_wan(
        repeats=1, num_frames=FRAMES, fps=8, steps=2, warmup=0, offload=["none"], height=64
    )
    config["variants"] = [
        v for v in config["variants"] if v["name"] in ("full-fp32", "Q8_0", "Q4_K")
    ]
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_config(path, folder / "results")


def test_frame_keys_belong_to_video_families() -> None:
    wan = validate_config(tiny_wan(num_frames=None, fps=None), "tiny-wan.yaml")
    assert (wan.frames, wan.frame_rate) == (81, 16)  # the family's defaults
    # The default frame count is what is measured: hashed as the count itself.
    assert config_hash(wan) == config_hash(validate_config(tiny_wan(num_frames=81), "t.yaml"))
    assert config_hash(wan) != config_hash(validate_config(tiny_wan(num_frames=9), "t.yaml"))
    assert config_hash(wan) == config_hash(
        validate_config(tiny_wan(num_frames=None, fps=24), "t.yaml")
    )
    with pytest.raises(ConfigError, match=r"num_frames: .*4k\+1|num_frames.*9"):
        validate_config(tiny_wan(num_frames=8), "tiny-wan.yaml")
    image = yaml.safe_load((ROOT / "configs" / "tiny-sd3.yaml").read_text())
    with pytest.raises(ConfigError, match=r"num_frames: SD3\.5 makes images"):
        validate_config({**image, "num_frames": 9}, "tiny-sd3.yaml")
    with pytest.raises(ConfigError, match=r"fps: SD3\.5 makes images"):
        validate_config({**image, "fps": 8}, "tiny-sd3.yaml")
    assert validate_config(image, "tiny-sd3.yaml").frames is None


@pytest.mark.slow
def test_a_video_run_keeps_every_frame_and_the_video(video_run: Path) -> None:
    manifest = json.loads((video_run / "manifest.json").read_text())
    assert {(c["num_frames"], c["fps"]) for c in manifest["cells"]} == {(FRAMES, 8)}
    records = image_records(read_records(video_run))
    assert len(records) == 3 * 2  # three variants, two prompts
    for record in records.values():
        assert record["status"] == "ok", record.get("error")
        assert record["num_frames"] == FRAMES and record["fps"] == 8
        frames = frame_paths(record)
        assert record["image"] == frames[0]
        sizes = {Image.open(video_run / f).size for f in frames}
        assert sizes == {(record["width"], record["height"])}
        with Image.open(video_run / record["video"]) as video:
            assert video.format == "WEBP" and video.n_frames == FRAMES
            video.load()
            assert video.info["duration"] == 125  # ms per frame at 8 fps
        assert len(record["step_s"]) == 2 and record["wall_s"] > sum(record["step_s"])


@pytest.mark.slow
def test_video_scores_and_report_have_frames(video_run: Path, tmp_path: Path) -> None:
    from bench.reporting.build import build_report
    from bench.scoring import SCORES_SUMMARY, score_run

    score_run(video_run, ["psnr"], progress=False)
    rows = json.loads((video_run / SCORES_SUMMARY).read_text())["cells"]
    psnr = {r["variant"]: r for r in rows if r["metric"] == "psnr"}
    assert psnr["full-fp32"]["status"] == "reference"
    assert psnr["Q8_0"]["mean"] > psnr["Q4_K"]["mean"]
    for variant in ("Q8_0", "Q4_K"):
        assert psnr[variant]["frames"] == [FRAMES]
        assert psnr[variant]["worst_frame"] <= psnr[variant]["mean"]

    out = build_report(video_run, tmp_path / "report")
    markdown = (out / "report.md").read_text() if out.is_dir() else out.read_text()
    assert "s/video, median (IQR)" in markdown and "s/frame" in markdown
    assert "worst frame" in markdown and f"{FRAMES} frames at 8 fps" in markdown
    assert f"Frames 1, 2, 3, 4, 5 of {FRAMES}" in markdown  # the grid is a frame strip
    (grid,) = sorted(out.glob("video-blog-city-*.webp"))  # the videos side by side, animated
    assert f"]({grid.name})" in markdown
    with Image.open(grid) as video:
        assert video.n_frames == FRAMES
        assert video.size[0] > 3 * 64 and video.size[1] > 64  # three variants and their names


@pytest.mark.slow
def test_resume_regenerates_a_video_whose_record_is_missing(video_run: Path) -> None:
    from bench.runner.executor import resume_run

    lines = (video_run / "records.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["kind"] == "image"
    (video_run / "records.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    resume_run(video_run)
    records = image_records(read_records(video_run))
    again = records[(last["cell_id"], last["prompt_id"], last["repeat"])]
    assert again["status"] == "ok" and again["num_frames"] == FRAMES
    assert all((video_run / f).is_file() for f in frame_paths(again))


def test_real_wan_config_names_city96_files_and_the_documented_call() -> None:
    from bench.config import load_config

    config, _ = load_config(ROOT / "configs" / "wan2.1-t2v-14b-gguf.yaml")
    assert (config.model.family, config.model.path) == ("wan", "Wan-AI/Wan2.1-T2V-14B-Diffusers")
    assert (config.height, config.width, config.frames, config.frame_rate) == (480, 832, 81, 16)
    assert config.guidance == 5.0 and config.max_sequence_length == 512
    for variant in config.variants[1:]:
        assert variant.file.startswith("https://huggingface.co/city96/Wan2.1-T2V-14B-gguf/")
        assert variant.file.endswith(f"wan2.1-t2v-14b-{variant.quant}.gguf")


def test_gpu_synthetic_wan_config_names_the_real_preset() -> None:
    from bench.config import load_config

    config, _ = load_config(ROOT / "configs" / "wan2.1-t2v-1.3b-synthetic.yaml")
    assert (config.model.family, config.model.preset) == ("wan", "wan2.1-t2v-1.3b")
    assert (config.height, config.width, config.frames) == (480, 832, 33)
    assert {v.kind for v in config.variants} == {"full", "gguf", "layerwise"}
