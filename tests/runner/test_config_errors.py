"""Bad input: one clear line naming the key or file, exit status 2, and no run folder.

A real `bench run` process answers for each reader of the input (the file, its YAML, its
prompt file, the command line) and for a config the validation refuses; the table of values
the validation refuses is asked of the library itself (`run_config`), whose UserInputError
bench.cli.errors prints as that one line with exit status 2 (tests/test_cli_errors.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.errors import UserInputError
from bench.runner.executor import run_config
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


def refusal(config: Path, out: Path) -> str:
    """The message `bench run CONFIG --out OUT` prints as its one `error:` line, from the
    library, before any file is written."""
    with pytest.raises(UserInputError) as refused:
        run_config(config, out)
    message = str(refused.value)
    assert "\n" not in message, message
    assert not out.exists()
    return message


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
    message = refusal(config, tmp_path / "results")
    for needle in (config.name, *needles):
        assert needle in message, message


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
    shipped = sorted(root.glob("*.yaml"))  # every config of the checkout, prompts/ aside
    assert {"tiny.yaml", "tiny-sd3.yaml", "tiny-qwen-image.yaml", "tiny-wan.yaml"} <= {
        p.name for p in shipped
    }
    for path in shipped:
        config, _ = load_config(path)
        assert config.variants, path.name
        assert config.name == path.stem, path.name  # the run folder is named after the file
    blog, _ = load_config(root / "flux-dev-gguf.yaml")
    assert (blog.height, blog.width, blog.steps, blog.guidance) == (496, 672, 60, 3.5)
    assert blog.max_sequence_length == 512 and blog.seed == 42
    assert [v.name for v in blog.variants] == ["full-bf16", "Q8_0", "Q6_K", "Q4_K"]
    assert [o.mode for o in blog.offload_specs] == ["none", "model", "sequential"]
    assert yaml.safe_load((root / "tiny.yaml").read_text())["name"] == "tiny"


# Values that mean nothing or allocate without bound (issue 13, items 4 and 5): each is refused
# with one line naming the key and what is allowed, and no folder.
@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"steps": True}, ("steps", "integer", "True")),
        ({"repeats": 2.0}, ("repeats", "integer", "2.0")),
        ({"guidance": float("nan")}, ("guidance", "finite")),
        ({"guidance": float("inf")}, ("guidance", "finite")),
        ({"height": 500}, ("height", "multiple of 16", "496 or 512")),
        ({"resolutions": [{"height": 64, "width": 100}]}, ("resolutions.0.width", "96 or 112")),
        ({"device": "cuda:x"}, ("device", "cuda:N", "'cuda:x'")),
        ({"device": "cuda:128"}, ("device", "0 to 127")),
        ({"seed": -1}, ("seed", "0 to 18446744073709551615")),
        ({"seed": 2**64}, ("seed", "0 to 18446744073709551615")),
        ({"steps": 10**9}, ("steps", "1 to 1000")),
        ({"repeats": 10**8}, ("repeats", "1 to 10000")),
        (
            {"height": 8192, "width": 8192, "repeats": 1000, "steps": 1000},
            ("megapixel-steps", "limit"),
        ),
        ({"warmup": -1}, ("warmup", "0 to 100")),
        ({"offload": ["none", "none"]}, ("offload", "duplicate", "none")),
        ({"offload": [{"mode": "none", "use_stream": True}]}, ("offload.0", "use_stream")),
        ({"prompts": []}, ("prompts", "at least 1")),
        ({"prompts": [{"id": "a", "text": " "}]}, ("prompts.0.text", "non-empty")),
        ({"prompts": [{"id": "p" * 65, "text": "x"}]}, ("prompts.0.id", "64 characters")),
        (
            {"variants": with_variant(name="FULL")},
            ("variants", "duplicate", "differ only in case"),
        ),
        (
            {"variants": with_variant(offload_modes=["group"])},
            ("variants.Q8_0.offload_modes", "group"),
        ),
    ],
    ids=[
        "bool-for-int",
        "float-for-int",
        "nan",
        "inf",
        "height-rounded",
        "width-rounded",
        "not-a-device",
        "device-index-wraps",
        "negative-seed",
        "seed-beyond-generator",
        "steps-unbounded",
        "repeats-unbounded",
        "run-work-unbounded",
        "negative-warmup",
        "duplicate-offload",
        "offload-setting-unused",
        "no-prompts",
        "blank-prompt",
        "name-too-long",
        "names-differ-in-case",
        "offload-mode-not-in-config",
    ],
)
def test_meaningless_or_unbounded_value_exits_2(
    tmp_path: Path, write_config, overrides: dict, needles: tuple[str, ...]
) -> None:
    config = write_config(**overrides)
    message = refusal(config, tmp_path / "results")
    for needle in (config.name, *needles):
        assert needle in message, message


def test_duplicate_yaml_key_names_key_and_lines(tmp_path: Path, write_config) -> None:
    config = write_config()
    config.write_text(config.read_text() + "steps: 60\n")  # BASE_CONFIG already says 3
    result = run_bench("run", str(config), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert_rejected(result, "config.yaml", "duplicate key 'steps'", "line")


def test_non_utf8_config_names_the_offset(tmp_path: Path, write_config) -> None:
    config = write_config()
    text = config.read_bytes()
    config.write_bytes(text.replace(b"macro photo", b"macro ph\xf6to"))
    offset = text.index(b"macro photo") + len(b"macro ph")
    result = run_bench("run", str(config), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert_rejected(result, "config.yaml", "not UTF-8", f"offset {offset}", "0xf6")


def test_non_utf8_prompt_file_names_the_file(tmp_path: Path, write_config) -> None:
    prompts = tmp_path / "prompts.yaml"
    prompts.write_bytes(b"prompts:\n  - {id: a, text: caf\xe9}\n")
    config = write_config(prompts={"file": "prompts.yaml"})
    out = tmp_path / "results"
    result = run_bench("run", str(config), "--out", str(out), cwd=tmp_path)
    assert_rejected(result, "prompts.yaml", "line 2", "not UTF-8")
    assert not out.exists()


def test_absurd_file_sizes_are_refused_before_reading(tmp_path: Path, write_config) -> None:
    """A sparse file: its size is what stat says, so nothing is read to find out."""
    from bench.limits import MAX_CONFIG_BYTES, MAX_PROMPT_FILE_BYTES

    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:
        handle.truncate(64 << 30)
    result = run_bench("run", str(huge), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert_rejected(result, "huge.yaml", str(MAX_CONFIG_BYTES))
    config = write_config(prompts={"file": "huge.yaml"})
    result = run_bench("run", str(config), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert_rejected(result, "huge.yaml", str(MAX_PROMPT_FILE_BYTES))


def test_prompt_file_that_implies_too_many_images(tmp_path: Path, write_config) -> None:
    """The image count of a prompt file is known only once it is read: still checked before
    any image list (or run folder) exists."""
    from bench.limits import MAX_IMAGES_PER_CELL, MAX_REPEATS

    prompts = tmp_path / "prompts.yaml"
    count = MAX_IMAGES_PER_CELL // MAX_REPEATS + 1  # the fewest prompts that pass the limit
    prompts.write_text(
        "prompts:\n" + "".join(f"  - {{id: p{i}, text: prompt {i}}}\n" for i in range(count))
    )
    config = write_config(prompts={"file": "prompts.yaml"}, repeats=MAX_REPEATS)
    message = refusal(config, tmp_path / "results")
    for needle in ("config.yaml", "repeats", str(MAX_IMAGES_PER_CELL), str(count * MAX_REPEATS)):
        assert needle in message, message


def test_deeply_nested_yaml_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "deep.yaml"
    config.write_text("name: t\nvariants: " + "[" * 100_000 + "\n")
    result = run_bench("run", str(config), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert_rejected(result, "deep.yaml", "nested more than")
