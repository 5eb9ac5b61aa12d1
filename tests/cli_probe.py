"""`bench` command lines run one after another in one fresh interpreter, each caught on its own.

A process per command costs its interpreter's start-up and imports (~0.5 s, seconds once torch
is imported) and shows nothing more where the process itself is not what a test is about: the
probe calls `bench.cli.main` as the `bench` script does, once per command, and records each
command's exit code, its stdout and stderr (every write through sys.stdout / sys.stderr while
it runs, whoever holds the stream object), and the heavy libraries in sys.modules after it.
sys.modules only grows, so a library absent after a command was imported by none before it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.fresh_python import run_python

PROBE = """
import json, os, sys
from bench.cli import main

class Caught:
    def __init__(self):
        self.parts = []
    def write(self, text):
        self.parts.append(text.decode() if isinstance(text, bytes) else text)
        return len(text)
    def flush(self):
        pass
    def isatty(self):
        return False
    def take(self):
        text, self.parts = "".join(self.parts), []
        return text

commands, heavy = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
real_stdout, out, err = sys.stdout, Caught(), Caught()
results = []
for args, cwd in commands:
    if cwd is not None:
        os.chdir(cwd)
    sys.argv = ["bench", *args]
    sys.stdout, sys.stderr = out, err
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.stdout, sys.stderr = real_stdout, sys.__stderr__
    loaded = sorted({m.split(".")[0] for m in sys.modules} & heavy)
    results.append({"code": code, "heavy": loaded, "stdout": out.take(), "stderr": err.take()})
print(json.dumps(results))
"""


def run_commands(
    commands: Sequence[Sequence[str]],
    *,
    heavy: Sequence[str] = (),
    cwds: Sequence[Path | None] | None = None,
    **options: Any,
) -> tuple[list[dict[str, Any]], str]:
    """Each of `commands` (the arguments after `bench`), in order, in one fresh interpreter,
    each in its folder of `cwds` if given; `options` go to subprocess.run (cwd, env,
    preexec_fn, timeout). Returns one {"code", "heavy", "stdout", "stderr"} per command, and
    what the interpreter wrote on stderr past sys.stderr."""
    folders = [None if c is None else str(c) for c in cwds or [None] * len(commands)]
    return run_python(
        PROBE,
        json.dumps([[list(a), c] for a, c in zip(commands, folders, strict=True)]),
        json.dumps(list(heavy)),
        **{"timeout": 300, **options},
    )
