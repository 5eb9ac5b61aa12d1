"""Small configs for runner tests: few images, few steps, real pipelines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runner.sample_config import BASE_CONFIG


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write BASE_CONFIG with top-level overrides to a YAML file and return its path."""

    def write(name: str = "config.yaml", **overrides: Any) -> Path:
        data = {**BASE_CONFIG, **overrides}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write
