"""bench/cli/errors.py: typed errors become one `error: ...` line on stderr and exit status 2
in the CLI, and only there; anything else still surfaces as the bug it is."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

import bench as bench_api
from bench.cli import app
from bench.cli.errors import reports_user_errors
from bench.errors import ConfigError, UserInputError
from bench.gguf.errors import GGUFFileError

ROOT = Path(__file__).resolve().parents[1]


def _invoke(command: Callable[..., None], *args: str) -> Result:
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    one.command()(command)
    return CliRunner().invoke(one, list(args))


def test_a_user_error_is_one_line_on_stderr_and_exit_2() -> None:
    @reports_user_errors()
    def command(name: str) -> None:
        print("started")
        raise ConfigError(f"{name}: expected a mapping")

    result = _invoke(command, "cfg.yaml")
    assert result.exit_code == 2
    assert result.stderr == "error: cfg.yaml: expected a mapping\n"
    assert result.stdout == "started\n"


def test_domain_errors_only_where_the_command_declares_them() -> None:
    @reports_user_errors(GGUFFileError)
    def inspects(path: str) -> None:
        raise GGUFFileError(f"{path}: not a GGUF file")

    @reports_user_errors()
    def does_not(path: str) -> None:
        raise GGUFFileError(f"{path}: not a GGUF file")

    declared = _invoke(inspects, "x.gguf")
    assert declared.exit_code == 2 and declared.stderr == "error: x.gguf: not a GGUF file\n"
    undeclared = _invoke(does_not, "x.gguf")
    assert isinstance(undeclared.exception, GGUFFileError) and undeclared.exit_code == 1


def test_the_decorated_command_keeps_its_options() -> None:
    @reports_user_errors()
    def command(count: int = typer.Option(1, min=1)) -> None:
        print(count * "x")

    assert _invoke(command, "--count", "3").stdout == "xxx\n"
    assert _invoke(command, "--count", "0").exit_code == 2  # click's own usage error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "no-such-run"], "error: no-such-run: run folder not found"),
        (["run", "no-such.yaml"], "error: no-such.yaml: config file not found"),
    ],
)
def test_python_m_bench_reports_through_the_package(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and lines == [message], result.stderr


# Bad input on the newer surfaces (issue 26), each through the installed `bench` command: exit 2,
# one `error:` line naming the option or key as the user wrote it, and nothing written.
BENCH = str(Path(sys.executable).parent / "bench")
TI2V_CONFIG = {
    "name": "ti2v",
    "model": {"source": "synthetic", "family": "wan", "preset": "tiny-ti2v", "seed": 0},
    "variants": [{"name": "full", "kind": "full", "dtype": "float32"}],
    "offload": ["none"],
    "prompts": [{"id": "cat", "text": "a cat"}],
    "height": 48,
    "width": 64,
    "num_frames": 5,
    "steps": 2,
    "device": "cpu",
}


def bench(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BENCH, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        # HOME beside the working folder: libraries' caches are not what a command wrote.
        env={"PATH": "/usr/bin:/bin", "HOME": f"{cwd}-home", "HF_HUB_OFFLINE": "1", **env},
    )


def bench_here(*args: str) -> subprocess.CompletedProcess[str]:
    """`bench ARGS` through its typer app in this process, in the working folder, answered as
    the process would be: for commands whose every refusal is a UserInputError raised inside
    the command (bench.cli.errors answers it there, as in a process), so that what the command
    imports is paid once, not once per case."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code in (0, 2), result.exception  # a traceback in a process
    return subprocess.CompletedProcess(
        ["bench", *args], result.exit_code, result.stdout, result.stderr
    )


def error_line(result: subprocess.CompletedProcess[str], *, alone: bool = True) -> str:
    """The one `error:` line of a refusal. `alone`: nothing else on stderr (commands that
    refuse before importing torch; after it, libraries may log their own lines first)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    if alone:
        assert lines == errors, result.stderr
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    return errors[0]


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_wan22_size_the_vae_would_round_is_refused_by_the_config(tmp_path: Path) -> None:
    """48×64 was recorded as 48×64 and saved as 32×64: Wan 2.2's VAE needs multiples of 32."""
    config = write_yaml(tmp_path / "ti2v.yaml", TI2V_CONFIG)
    line = error_line(bench("run", str(config), "--out", "results", cwd=tmp_path))
    assert "ti2v.yaml: height: expected a multiple of 32" in line and "32 or 64" in line
    assert "(got 48)" in line and not (tmp_path / "results").exists()
    resolutions = {**TI2V_CONFIG, "resolutions": [{"height": 64, "width": 80}]}
    del resolutions["height"], resolutions["width"]
    config = write_yaml(tmp_path / "ti2v.yaml", resolutions)
    line = error_line(bench("run", str(config), "--out", "results", cwd=tmp_path))
    assert "resolutions.0.width: expected a multiple of 32" in line and "64 or 96" in line
    assert not (tmp_path / "results").exists()


def _http_server() -> tuple[Any, int]:
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_ray_address_that_can_never_work_is_refused_before_the_run_folder(
    tmp_path: Path,
) -> None:
    # Looked up, not imported: importing ray sets RAY_CLIENT_MODE in this process, and a changed
    # environment restarts the cell server of the next sweep here (bench.runner.processes).
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed")
    config = write_yaml(tmp_path / "c.yaml", {**TI2V_CONFIG, "height": 64})
    closed = _closed_port()
    server, http_port = _http_server()
    try:
        cases = [
            ("http://127.0.0.1:1", {}, "a http:// URL is not an address Ray connects to"),
            ("ftp://head:6379", {}, "a ftp:// URL is not an address Ray connects to"),
            ("head", {}, "expected host:port"),
            (f"ray://127.0.0.1:{closed}", {}, "cannot connect"),
            (f"127.0.0.1:{closed}", {}, "cannot connect"),
            (f"127.0.0.1:{http_port}", {}, "answers HTTP"),
            ("auto", {"RAY_ADDRESS": f"127.0.0.1:{closed}"}, f"auto: 127.0.0.1:{closed}: cannot"),
        ]
        for address, env, needle in cases:
            result = bench(
                "run", str(config), "--out", "results", "--executor", "ray",
                "--ray-address", address, cwd=tmp_path, **env,
            )  # fmt: skip
            line = error_line(result)
            assert line.startswith(f"error: --ray-address {address}: "), line
            assert needle in line, line
            assert "RAY_ADDRESS" not in line and "resume" not in line, line
            assert not (tmp_path / "results").exists(), address
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("args", "needle", "alone"),
    [
        (["size", "--height", "15"], "error: --height: expected a whole number from 16", True),
        (["size", "--height", "abc"], "error: Invalid value for '--height'", True),
        (["size", "--batch", "0"], "error: --batch: expected a whole number from 1 to 1024", True),
        (["size", "--margin", "2"], "error: --margin: expected a number from 0 to 0.9", True),
        (["size", "--vram", "1e400GiB"], "error: --vram: '1e400GiB': expected more", True),
        (["size", "--offload", "group-block0"], "error: --offload: 'group-block0'", True),
        (["size", "--quant", "Q9"], "error: --quant: 'Q9': not a ggml type", True),
        (
            ["size", "--model", "wan2.1-t2v-1.3b", "--frames", "6"],
            "error: --frames: Wan makes 4k+1 frames",
            False,
        ),
        (
            ["size", "--model", "wan2.2-ti2v-5b", "--height", "48"],
            "error: --height: expected a multiple of 32",
            False,
        ),
        (["score"], "error: Missing argument 'run_dir' (see bench score --help)", False),
        (["run", "--bogus"], "error: No such option: --bogus", True),
        (["quantize", "x", "-t", "Q8_0", "-o", "y", "-j", "x"], "error: Invalid value for", True),
    ],
    ids=["height-small", "height-text", "batch", "margin", "vram-inf", "offload", "quant",
         "frames-named-as-the-option", "height-wan22", "missing-argument", "unknown-option",
         "jobs-text"],
)  # fmt: skip
def test_a_bad_command_line_value_is_one_error_line(
    tmp_path: Path, args: list[str], needle: str, alone: bool
) -> None:
    line = error_line(bench(*args, cwd=tmp_path), alone=alone)
    assert line.startswith(needle), line
    assert list(tmp_path.iterdir()) == []  # nothing written


QUIET_RUN = ROOT / "tests" / "compare" / "fixtures" / "quiet-128"


def test_an_output_path_is_checked_before_the_work_and_never_replaces_other_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--out` of a report replaces its folder whole: a file, or a folder of other things, was
    silently deleted. `--json`/`--markdown` naming a folder failed after the work was printed
    (compare with a traceback, leaving its temporary file). One real process (`size`); the
    report and compare commands in this one, as `bench_here` says."""
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    (tmp_path / "afile").write_text("also precious")
    monkeypatch.chdir(tmp_path)
    cases = [
        (["report", str(QUIET_RUN), "--out", "mine"], "error: --out: mine holds files but no "),
        (["report", str(QUIET_RUN), "--out", "afile"], "error: --out: afile is a file"),
        (["compare", str(QUIET_RUN), str(QUIET_RUN), "--json", "mine"], "error: --json: mine is"),
        (
            ["compare", str(QUIET_RUN), str(QUIET_RUN), "--markdown", "no/such/c.md"],
            "error: --markdown: no/such/c.md: its folder no/such does not exist",
        ),
    ]
    results = [(args, bench_here(*args)) for args, _ in cases]
    results.append((["size", "--json", "mine"], bench("size", "--json", "mine", cwd=tmp_path)))
    needles = [needle for _, needle in cases] + ["error: --json: mine is a folder"]
    for (args, result), needle in zip(results, needles, strict=True):
        assert error_line(result, alone=False).startswith(needle), result.stderr
        assert result.stdout == "", args  # refused before the work, not after printing it
    assert (keep / "notes.txt").read_text() == "precious"
    assert (tmp_path / "afile").read_text() == "also precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine"]
    with pytest.raises(UserInputError, match=r"^report\(out=\.\.\.\): .*mine holds files"):
        bench_api.report(QUIET_RUN, out=keep)
    report = bench_here("report", str(QUIET_RUN), "--out", "report")
    assert report.returncode == 0, report.stderr
    again = bench_here("report", str(QUIET_RUN), "--out", "report")
    assert again.returncode == 0, again.stderr  # an earlier report's folder is replaced


def test_options_a_mode_would_ignore_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [
        (["size", "--check", str(QUIET_RUN), "--vram", "12GiB"], "error: --check: sizes the run"),
        (["size", "--runs", str(QUIET_RUN), "--quant", "Q8_0"], "error: --quant: not used with"),
        (
            ["size", "--runs", str(QUIET_RUN), "--model", "wan2.1-t2v-14b"],
            "error: --model: not used with runs",
        ),
    ]
    monkeypatch.chdir(tmp_path)
    for args, needle in cases:  # `size` in a real process: the output-path test above
        assert error_line(bench_here(*args), alone=False).startswith(needle), args
    inspect = bench("inspect", ".", cwd=tmp_path)
    assert error_line(inspect, alone=False).startswith("error: .: a folder, not a GGUF file")


def test_a_folder_where_a_file_belongs_is_named_as_a_folder(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    assert error_line(bench("run", "adir", cwd=tmp_path)) == (
        "error: adir: a folder, not a config file"
    )
    config = write_yaml(
        tmp_path / "c.yaml", {**TI2V_CONFIG, "height": 64, "prompts": {"file": "adir"}}
    )
    line = error_line(bench("run", str(config), "--out", "results", cwd=tmp_path))
    assert line.endswith(f"prompts.file: {tmp_path / 'adir'} is a folder, not a prompt file")
    assert not (tmp_path / "results").exists()


def test_a_pretrained_path_is_a_pipeline_folder_of_the_configs_family(tmp_path: Path) -> None:
    """A file is named as a file; a folder that another registered family builds (here a
    WanPipeline under a FLUX config) is refused at config time, naming both families."""
    config = {
        "name": "pretrained",
        "model": {"source": "pretrained", "path": "./model"},
        "variants": [{"name": "full", "kind": "full", "dtype": "float32"}],
        "prompts": [{"id": "a", "text": "a cat"}],
        "steps": 2,
        "height": 64,
        "width": 64,
        "device": "cpu",
    }
    path = write_yaml(tmp_path / "c.yaml", config)
    (tmp_path / "model").write_text("not a folder")
    line = error_line(bench("run", str(path), "--out", "results", cwd=tmp_path))
    assert "model.path: './model' is a file; expected a diffusers pipeline folder" in line
    (tmp_path / "model").unlink()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    line = error_line(bench("run", str(path), "--out", "results", cwd=tmp_path), alone=False)
    assert "model.family: 'flux', but model.path './model' holds a WanPipeline" in line
    assert "set model.family: wan" in line and not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--memory-min-mib", "inf"], "error: --memory-min-mib: expected a number from 0"),
        (["--memory-min-mib", "-5"], "error: --memory-min-mib: expected a number from 0"),
        (["--quality-margin", "psnr=nan"], "error: --quality-margin 'psnr=nan': expected"),
        (["--quality-margin", "psnr=-1"], "error: --quality-margin 'psnr=-1': expected"),
    ],
)
def test_compare_thresholds_are_checked_before_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: list[str], expected: str
) -> None:
    """An infinite or negative memory floor was a traceback or accepted; a NaN quality margin
    compares false with everything (never a regression): each is one line, before any run
    folder is read."""
    monkeypatch.chdir(tmp_path)
    line = error_line(bench_here("compare", "missing-a", "missing-b", *option))
    assert line.startswith(expected)


def test_a_compare_threshold_is_refused_by_the_process_alone(tmp_path: Path) -> None:
    """The cases above in this process; one in a real one, where nothing else may be on
    stderr (a library's log line would show there, not in this process's capture)."""
    result = bench(
        "compare", "missing-a", "missing-b", "--quality-margin", "psnr=nan", cwd=tmp_path
    )
    line = error_line(result)
    assert line.startswith("error: --quality-margin 'psnr=nan': expected")
