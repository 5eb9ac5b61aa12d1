"""A real sweep on the tiny synthetic pipeline: every cell recorded, fields sane, failures kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from bench.cell_summary import summarize_run
from bench.results import cell_records, image_records, read_manifest, read_records
from bench.runner.executor import run_config

pytestmark = pytest.mark.slow
SECRET = "hf_not_a_real_token_but_must_not_leak"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    from tests.runner.sample_config import BASE_CONFIG

    folder = tmp_path_factory.mktemp("tiny-run")
    config = {
        **BASE_CONFIG,
        "variants": [
            *BASE_CONFIG["variants"],
            # A GGUF type diffusers can load but the harness cannot make: must be "unavailable".
            {"name": "Q4_0", "kind": "gguf", "quant": "Q4_0", "compute_dtype": "float32"},
        ],
        "offload": ["none", "model"],
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    previous = os.environ.get("HF_TOKEN")
    os.environ["HF_TOKEN"] = SECRET
    try:
        return run_config(path, folder / "results")
    finally:
        if previous is None:
            del os.environ["HF_TOKEN"]
        else:
            os.environ["HF_TOKEN"] = previous


def test_every_cell_has_exactly_one_cell_record(tiny_run: Path) -> None:
    manifest = read_manifest(tiny_run)
    records = read_records(tiny_run)
    cells = [r for r in records if r["kind"] == "cell"]
    assert sorted(r["cell_id"] for r in cells) == sorted(c["cell_id"] for c in manifest["cells"])
    assert len(manifest["cells"]) == 3 * 2


def test_cells_that_run_have_sane_measurements(tiny_run: Path) -> None:
    manifest = read_manifest(tiny_run)
    records = read_records(tiny_run)
    cells = cell_records(records)
    images = image_records(records)
    steps = manifest["config"]["steps"]
    for cell_id in ("full__none__64x64", "Q8_0__none__64x64"):
        cell = cells[cell_id]
        assert cell["status"] == "ok", cell["error"]
        assert cell["load_s"] > 0
        assert cell["first_call_s"] == cell["warmup_s"][0] > 0
        assert cell["memory"]["load"]["host_rss_peak_bytes"] > 0
        assert cell["weights"]["transformer"]["parameters"] > 0
        for image in manifest["images"]:
            record = images[(cell_id, image["prompt_id"], image["repeat"])]
            assert record["status"] == "ok"
            assert record["seed"] == image["seed"]
            assert len(record["step_s"]) == steps
            assert all(s > 0 for s in record["step_s"])
            assert record["transfer_s"] >= 0  # no offload: a synchronize apart
            parts = record["encode_s"] + record["transfer_s"] + sum(record["step_s"])
            parts += record["decode_s"]
            assert parts == pytest.approx(record["wall_s"], rel=1e-6, abs=1e-6)
            assert record["memory"]["host_rss_peak_bytes"] >= record["memory"]["samples"] > 0
            with Image.open(tiny_run / record["image"]) as picture:
                assert picture.size == (64, 64)


def test_gguf_transformer_is_smaller_than_full_precision(tiny_run: Path) -> None:
    cells = cell_records(read_records(tiny_run))
    full = cells["full__none__64x64"]["weights"]["transformer"]
    q8 = cells["Q8_0__none__64x64"]["weights"]["transformer"]
    assert q8["parameters"] == full["parameters"]
    # fp32 is 32 bits per weight; Q8_0 blocks are 8.5, some tensors stay F32 in the file.
    assert q8["bytes"] < 0.5 * full["bytes"]


def test_cells_that_cannot_run_are_recorded_not_fatal(tiny_run: Path) -> None:
    cells = cell_records(read_records(tiny_run))
    model_offload = cells["full__model__64x64"]
    assert model_offload["status"] == "failed"
    assert model_offload["error"]["type"] == "RuntimeError"
    assert "accelerator" in model_offload["error"]["message"]
    assert model_offload["error"]["phase"] == "offload"
    unavailable = cells["Q4_0__none__64x64"]
    assert unavailable["status"] == "unavailable"
    assert "Q4_0" in unavailable["error"]["message"]


def test_seeds_are_paired_across_variants(tiny_run: Path) -> None:
    images = [r for r in read_records(tiny_run) if r["kind"] == "image"]
    seeds: dict[tuple[str, int], set[int]] = {}
    for record in images:
        seeds.setdefault((record["prompt_id"], record["repeat"]), set()).add(record["seed"])
    assert seeds and all(len(s) == 1 for s in seeds.values())
    assert len({next(iter(s)) for s in seeds.values()}) == len(seeds)


def test_manifest_describes_the_run(tiny_run: Path) -> None:
    manifest = read_manifest(tiny_run)
    assert len(manifest["config_hash"]) == 16
    assert manifest["finished_at"] is not None
    assert manifest["base_model"]["synthetic"] is True
    env = manifest["environment"]
    assert env["packages"]["torch"] and env["packages"]["diffusers"]
    q8 = next(c for c in manifest["cells"] if c["variant"] == "Q8_0")
    assert q8["transformer_file"]["bytes"] > 0


def test_summary_has_medians_for_ok_cells(tiny_run: Path) -> None:
    frame = summarize_run(tiny_run).set_index("cell_id")
    assert frame.loc["full__none__64x64", "n"] == 2
    assert frame.loc["full__none__64x64", "median_s"] > 0
    assert frame.loc["full__model__64x64", "status"] == "failed"
    assert frame.loc["Q4_0__none__64x64", "status"] == "unavailable"


def test_secrets_in_the_environment_never_reach_the_run_folder(tiny_run: Path) -> None:
    for name in ("manifest.json", "records.jsonl"):
        assert SECRET not in (tiny_run / name).read_text()


def test_the_run_table_heads_with_nvml_net_of_the_baseline() -> None:
    """`bench run`'s table says what the report says: NVML less what the card held before the
    cell; without a baseline the next counter, never the gross device figure."""
    import pandas as pd

    from bench.cell_summary import headline_memory

    gib = 2**30
    row = {
        "load_nvml_used_peak_bytes": 10 * gib,
        "generate_nvml_used_peak_bytes": 12 * gib,
        "baseline_nvml_used_bytes": 4 * gib,
        "generate_torch_max_reserved_bytes": 7 * gib,
    }
    assert headline_memory(pd.Series(row)) == (8.0, "NVML device used, net of baseline")
    row["baseline_nvml_used_bytes"] = None
    assert headline_memory(pd.Series(row)) == (7.0, "torch reserved")
