"""Code run in a fresh interpreter that answers with JSON on its last line of stdout.

For what a test process cannot show about itself, having imported everything long ago: which
modules an import loads, how a pool starts its workers without torch, what a command writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_python(code: str, *args: str, **options: Any) -> tuple[Any, str]:
    """`python -c CODE ARGS` in a fresh interpreter, which must exit 0; `options` go to
    subprocess.run (cwd, env, timeout: 600 s unless given). Returns the JSON value of its last
    stdout line, and its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        **{"timeout": 600, **options},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr
