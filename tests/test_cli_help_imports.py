"""Every command's own help answers from the command line's own modules: `bench <command> --help`
imports none of the heavy libraries (issue 23: ~1 s each), read from a fresh interpreter's
sys.modules after the help was printed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.cli import LAZY_COMMANDS

HEAVY = ("torch", "pandas", "scipy", "diffusers", "transformers", "torchmetrics")

PROBE = """
import json, sys
heavy = set(json.loads(sys.argv[2]))
sys.argv = ["bench", *json.loads(sys.argv[1])]
from bench.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
loaded = sorted({m.split(".")[0] for m in sys.modules} & heavy)
print(json.dumps({"code": code, "heavy": loaded}), file=sys.stderr)
"""


@pytest.mark.parametrize("command", [None, "run", "env", *LAZY_COMMANDS])
def test_help_imports_no_heavy_library(command: str | None) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    probe = json.loads(result.stderr.strip().splitlines()[-1])
    assert "Usage:" in result.stdout, result.stdout
    assert probe == {"code": 0, "heavy": []}
