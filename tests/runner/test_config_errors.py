"""Bad input: one clear line naming the key or file, exit status 2, and no run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.runner.sample_config import BASE_CONFIG


def run_bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_rejected(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def with_variant(**fields: object) -> list[dict]:
    return [BASE_CONFIG["variants"][0], {**BASE_CONFIG["variants"][1], **fields}]


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"variants": with_variant(quantt="Q8_0")}, ("variants.Q8_0.quantt", "unknown key")),
        ({"steps": "many"}, ("steps", "integer", "'many'")),
        ({"variants": with_variant(quant="Q9_9")}, ("variants.Q8_0.quant", "Q8_0", "Q9_9")),
        ({"variants": with_variant(file="missing.gguf")}, ("variants.Q8_0.file", "missing.gguf")),
        ({"prompts": {"file": "nope.yaml"}}, ("nope.yaml", "not found")),
        ({"offload": ["none", "everything"]}, ("offload",)),
        ({"variants": []}, ("variants",)),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "unknown-quant",
        "missing-gguf",
        "missing-prompts",
        "bad-offload",
        "no-variants",
    ],
)
def test_config_error_exits_2_without_run_folder(
    tmp_path: Path, write_config, overrides: dict, needles: tuple[str, ...]
) -> None:
    config = write_config(**overrides)
    out = tmp_path / "results"
    result = run_bench("run", str(config), "--out", str(out), cwd=tmp_path)
    assert_rejected(result, str(config.name), *needles)
    assert not out.exists()


def test_gguf_without_file_on_a_pretrained_base_is_refused(tmp_path: Path, write_config) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    config = write_config(model={"source": "pretrained", "path": str(base)})
    out = tmp_path / "results"
    result = run_bench("run", str(config), "--out", str(out), cwd=tmp_path)
    assert_rejected(result, "variants.Q8_0.file", "required", "pretrained")
    assert not out.exists()


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_bench("run", "absent.yaml", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert_rejected(result, "absent.yaml", "not found")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("name: t\nvariants: [\n  - {name: a\n")
    result = run_bench("run", str(config), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert_rejected(result, "broken.yaml", "not valid YAML")


def test_only_with_unknown_variant(tmp_path: Path, write_config) -> None:
    config = write_config()
    out = tmp_path / "results"
    result = run_bench("run", str(config), "--only", "Q2_K", "--out", str(out), cwd=tmp_path)
    assert_rejected(result, "--only", "Q2_K")
    assert not out.exists()


def test_shipped_configs_validate() -> None:
    from bench.config import load_config

    root = Path(__file__).resolve().parents[2] / "configs"
    for name in ("tiny.yaml", "flux-dev-gguf.yaml", "flux-dev-synthetic.yaml"):
        config, _ = load_config(root / name)
        assert config.variants, name
    blog, _ = load_config(root / "flux-dev-gguf.yaml")
    assert (blog.height, blog.width, blog.steps, blog.guidance) == (496, 672, 60, 3.5)
    assert blog.max_sequence_length == 512 and blog.seed == 42
    assert [v.name for v in blog.variants] == ["full-bf16", "Q8_0", "Q6_K", "Q4_K"]
    assert [o.mode for o in blog.offload_specs] == ["none", "model", "sequential"]
    assert yaml.safe_load((root / "tiny.yaml").read_text())["name"] == "tiny"
