"""A GGUF variant's `file` and `quant` are checked against each other and against what diffusers
can load, before any run folder exists: real files made by the converter, a real Hub cache
layout, and `bench run` as a real process (exit 2, one `error:` line, nothing written)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.backends.gguf import GGUFQuantMismatch, GGUFVariant, local_gguf_file
from bench.families.gguf import quantize_checkpoint
from bench.gguf.header import read_header
from bench.gguf.qtypes import declared_type_mismatch

BENCH = str(Path(sys.executable).parent / "bench")

CONFIG = {
    "name": "t",
    "model": {"source": "synthetic", "preset": "tiny", "seed": 0},
    "variants": [{"name": "full", "kind": "full", "dtype": "float32"}],
    "offload": ["none"],
    "prompts": [{"id": "city", "text": "a city"}],
    "height": 64,
    "width": 64,
    "steps": 2,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def q8_file(tiny_flux_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("q8") / "flux-Q8_0.gguf"
    quantize_checkpoint(tiny_flux_pipeline / "transformer", out, "Q8_0", jobs=1)
    return out


def weights(path: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for tensor in read_header(path).tensors:
        counts[tensor.ggml_type] += tensor.n_elements
    return dict(counts)


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M", "Q5_K_S", "BF16"])
def test_a_converter_file_is_what_it_was_made_as_and_nothing_else(
    tiny_flux_pipeline: Path, tmp_path: Path, quant: str
) -> None:
    out = tmp_path / f"{quant}.gguf"
    quantize_checkpoint(tiny_flux_pipeline / "transformer", out, quant, jobs=1)
    held = weights(out)
    assert declared_type_mismatch(quant, held) is None, held
    for other in ("Q8_0", "Q4_K", "Q6_K", "F16", "Q4_0"):
        if other.startswith(quant.removesuffix("_M").removesuffix("_S")):
            continue
        problem = declared_type_mismatch(other, held)
        assert problem is not None and other in problem, (other, held)


def test_floats_beside_a_block_type_do_not_make_it_another_type() -> None:
    """SD3.5 Large's width (2432) takes no K-quant: 77% of a Q4_K file stays F16. Still Q4_K;
    a file with no block-quantized weight at all is not."""
    sd35_q4k = {"F16": 77, "Q4_K": 22, "F32": 1}
    assert declared_type_mismatch("Q4_K", sd35_q4k) is None
    assert "Q4_K weights" in (declared_type_mismatch("F16", sd35_q4k) or "")
    assert "no block-quantized weights" in (declared_type_mismatch("Q4_K", {"F16": 9}) or "")


def write_config(tmp_path: Path, **variant: object) -> Path:
    data = {**CONFIG, "variants": [*CONFIG["variants"], {"name": "q", "kind": "gguf", **variant}]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def bench_run(config: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BENCH, "run", str(config), "--out", str(tmp_path / "results"), "--no-score"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path), **env},
    )


def assert_refused(result: subprocess.CompletedProcess[str], tmp_path: Path, *needles: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "results").exists()
    return lines[0]


def test_declared_quant_over_another_types_file_is_refused_naming_both(
    q8_file: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, quant="Q4_K", file=str(q8_file))
    line = assert_refused(bench_run(config, tmp_path), tmp_path, "variants.q.quant", "Q4_K")
    assert "Q8_0 weights" in line and str(q8_file) in line


@pytest.mark.parametrize(
    ("file", "needles"),
    [
        ("adir", ("variants.q.file", "'adir' is a folder, not a GGUF file")),
        ("ftp://host/x.gguf", ("unsupported scheme 'ftp'", "local path", "huggingface.co")),
        ("file:///tmp/x.gguf", ("unsupported scheme 'file'", "'file:///tmp/x.gguf'")),
        ("http://127.0.0.1:9/x.gguf", ("not a Hugging Face Hub file URL", "127.0.0.1:9/x.gguf")),
        ("https://huggingface.co/a/b/blob/main/x.safetensors", ("a .gguf file",)),
    ],
    ids=["folder", "ftp", "file-url", "not-hub", "not-gguf"],
)
def test_a_file_diffusers_cannot_load_is_refused_naming_it(
    tmp_path: Path, file: str, needles: tuple[str, ...]
) -> None:
    (tmp_path / "adir").mkdir()
    config = write_config(tmp_path, quant="Q8_0", file=file)
    assert_refused(bench_run(config, tmp_path), tmp_path, *needles)


def hub_cache(root: Path, repo: str, filename: str, source: Path) -> Path:
    """A Hugging Face cache holding `source` as `filename` of `repo` at main, laid out as
    huggingface_hub writes it (refs/main names the snapshot)."""
    folder = root / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit / filename
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(source.read_bytes())
    return root


def test_a_downloaded_hub_file_is_checked_before_any_cell(q8_file: Path, tmp_path: Path) -> None:
    cache = hub_cache(tmp_path / "hub", "someone/flux-gguf", "flux-Q8_0.gguf", q8_file)
    url = "https://huggingface.co/someone/flux-gguf/blob/main/flux-Q8_0.gguf"
    config = write_config(tmp_path, quant="Q6_K", file=url)
    result = bench_run(config, tmp_path, HF_HUB_CACHE=str(cache))
    assert_refused(result, tmp_path, "variants.q.quant: Q6_K", url, "Q8_0 weights")


def test_a_cell_checks_a_hub_file_it_downloads(
    q8_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the file is fetched by the cell (not yet downloaded when the run began), the cell
    checks it before loading it: a cell failure naming both types, and a right file loads
    from the revision its URL names."""
    from huggingface_hub import constants

    cache = hub_cache(tmp_path / "hub", "someone/flux-gguf", "sub/flux-Q8_0.gguf", q8_file)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at import, else
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    url = "https://huggingface.co/someone/flux-gguf/resolve/main/sub/flux-Q8_0.gguf"
    right = GGUFVariant(kind="gguf", name="q", quant="Q8_0", file=url)
    assert Path(local_gguf_file(right, url)).read_bytes() == q8_file.read_bytes()
    wrong = GGUFVariant(kind="gguf", name="q", quant="Q4_K_S", file=url)
    with pytest.raises(GGUFQuantMismatch, match=r"Q8_0 weights.*not the declared quant Q4_K_S"):
        local_gguf_file(wrong, url)
