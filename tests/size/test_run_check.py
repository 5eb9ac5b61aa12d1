"""On a real CPU run, the predicted weights equal the bytes every cell loaded."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from bench.sizing.check import check_run
from tests.runner.sample_config import BASE_CONFIG


@pytest.mark.slow
def test_weights_term_equals_loaded_bytes_on_a_tiny_cpu_run(tmp_path: Path) -> None:
    from bench.runner.executor import run_config

    config = copy.deepcopy(BASE_CONFIG)
    config.update(name="size", prompts=config["prompts"][:1], steps=1, warmup=0)
    path = tmp_path / "size.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = run_config(path, tmp_path / "runs", console=Console(quiet=True))

    checks = check_run(run_dir)
    assert [c.variant for c in checks] == ["full", "Q8_0"]
    for c in checks:
        assert c.status == "ok"
        assert c.weights_loaded, "a CPU cell still records what it loaded"
        assert c.weights_predicted == c.weights_loaded
        assert c.prediction is not None
        none_weights = sum(t.bytes for t in c.prediction.terms if t.kind == "weights")
        assert none_weights == sum(c.weights_loaded.values())  # offload none: all of it
        assert c.nvml_measured is None and c.nvml_error is None  # no GPU: nothing invented
