"""A GGUF variant's `file` and `quant` are checked against each other and against what diffusers
can load, before any run folder exists: real files made by the converter, a real Hub cache
layout, and `bench run` in a real process (exit 2, one `error:` line, nothing written): the
refused configs run one after another in one process (tests/cli_probe.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.backends.gguf import GGUFQuantMismatch, GGUFVariant, local_gguf_file
from bench.families.gguf import quantize_checkpoint
from bench.gguf.header import read_header
from bench.gguf.qtypes import declared_type_mismatch
from tests.cli_probe import run_commands

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


HUB_URL = "https://huggingface.co/someone/flux-gguf/blob/main/flux-Q8_0.gguf"
# case: the variant's quant and file (None: the converter's Q8_0 file)
REFUSED: dict[str, tuple[str, str | None]] = {
    "q8-as-q4k": ("Q4_K", None),
    "folder": ("Q8_0", "adir"),
    "ftp": ("Q8_0", "ftp://host/x.gguf"),
    "file-url": ("Q8_0", "file:///tmp/x.gguf"),
    "not-hub": ("Q8_0", "http://127.0.0.1:9/x.gguf"),
    "not-gguf": ("Q8_0", "https://huggingface.co/a/b/blob/main/x.safetensors"),
    "hub-q8-as-q6k": ("Q6_K", HUB_URL),
}
Refused = dict[str, tuple[dict, Path, str]]


@pytest.fixture(scope="module")
def refused(q8_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Refused:
    """`bench run` of each REFUSED case in its own folder, one after another in one fresh
    process (tests/cli_probe.py), offline, with a Hub cache holding the Q8_0 file at HUB_URL:
    {case: (its result, its folder, what the process wrote past sys.stderr)}."""
    root = tmp_path_factory.mktemp("declared")
    cache = hub_cache(root / "hub", "someone/flux-gguf", "flux-Q8_0.gguf", q8_file)
    folders = [root / case for case in REFUSED]
    commands = []
    for folder, (quant, file) in zip(folders, REFUSED.values(), strict=True):
        (folder / "adir").mkdir(parents=True)
        config = write_config(folder, quant=quant, file=file or str(q8_file))
        commands.append(["run", str(config), "--out", str(folder / "results"), "--no-score"])
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(root)}
    results, stray = run_commands(commands, cwds=folders, env={**env, "HF_HUB_CACHE": str(cache)})
    return {
        case: (result, folder, stray)
        for case, result, folder in zip(REFUSED, results, folders, strict=True)
    }


def assert_refused(refused: Refused, case: str, *needles: str) -> str:
    """Exit 2, one `error:` line holding every needle, and no run folder."""
    result, folder, stray = refused[case]
    assert result["code"] == 2, result["stderr"]
    lines = result["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result["stderr"]
    assert stray == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (folder / "results").exists()
    return lines[0]


def test_declared_quant_over_another_types_file_is_refused_naming_both(
    q8_file: Path, refused: Refused
) -> None:
    line = assert_refused(refused, "q8-as-q4k", "variants.q.quant", "Q4_K")
    assert "Q8_0 weights" in line and str(q8_file) in line


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("folder", ("variants.q.file", "'adir' is a folder, not a GGUF file")),
        ("ftp", ("unsupported scheme 'ftp'", "local path", "huggingface.co")),
        ("file-url", ("unsupported scheme 'file'", "'file:///tmp/x.gguf'")),
        ("not-hub", ("not a Hugging Face Hub file URL", "127.0.0.1:9/x.gguf")),
        ("not-gguf", ("a .gguf file",)),
    ],
    ids=["folder", "ftp", "file-url", "not-hub", "not-gguf"],
)
def test_a_file_diffusers_cannot_load_is_refused_naming_it(
    refused: Refused, case: str, needles: tuple[str, ...]
) -> None:
    assert_refused(refused, case, *needles)


def test_a_downloaded_hub_file_is_checked_before_any_cell(refused: Refused) -> None:
    assert_refused(refused, "hub-q8-as-q6k", "variants.q.quant: Q6_K", HUB_URL, "Q8_0 weights")


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
