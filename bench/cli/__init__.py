"""The `bench` command: typer commands that parse, call the library, print, and set exit codes.

Each command lives in the module of its group (run, env, score, report, compare, size, gguf) and
is a thin shell over one library function. Stage commands are imported only when invoked, so
`bench run` and `bench env` start without loading the metric models and the quantizer. This
package is the only one that turns typed errors into `error: ...` and exit status 2
(bench.cli.errors); nothing in the library imports it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from bench.cli.env import env_command
from bench.cli.errors import EXIT_USER_ERROR, exit_on_user_error
from bench.cli.run import run_command
from bench.errors import UserInputError
from bench.library_output import quiet_library_environment

# name -> (module, attribute, one-line help), imported only when the command is run or its own
# help is asked for; the one-line help (the command's docstring's first line, checked by
# tests/test_cli_startup.py) lists it in `bench --help` without importing it.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "quantize": (
        "bench.cli.gguf",
        "quantize_command",
        "Quantize a diffusion transformer checkpoint to GGUF files, one per type.",
    ),
    "inspect": (
        "bench.cli.gguf",
        "inspect_command",
        "Show a GGUF file's metadata, tensor types, size and bits per weight.",
    ),
    "score": (
        "bench.cli.score",
        "score_command",
        "Score a run's images (fidelity to full precision, CLIP score, FID/KID/CMMD).",
    ),
    "report": (
        "bench.cli.report",
        "report_command",
        "Write report.md, a self-contained report.html and table.csv for a run folder.",
    ),
    "compare": (
        "bench.cli.compare",
        "compare_command",
        "Compare two runs cell by cell; exit 1 on a regression, 2 when they are not comparable.",
    ),
    "matrix": (
        "bench.cli.compare",
        "matrix_command",
        "Run CONFIG once per version set and compare consecutive sets; exit 1 on a regression.",
    ),
    "size": (
        "bench.cli.size",
        "size_command",
        "Predict peak VRAM without a GPU, check it against a run, or list what fits a card.",
    ),
}


class LazyGroup(TyperGroup):
    """Imports a command's module only to run it or show its own help: the group's help lists
    the lazy commands from their one-line help (click and typer would look every one up)."""

    listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *LAZY_COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute, help_line = LAZY_COMMANDS[cmd_name]
        if self.listing:
            return typer.core.TyperCommand(cmd_name, help=help_line)
        function = getattr(importlib.import_module(module), attribute)
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(cmd_name)(function)
        command = typer.main.get_command(single)
        command.name = cmd_name
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


# click's exceptions, as the typer installed raises them (recent typers carry their own click):
# found through the module of the one typer names publicly.
_CLICK = importlib.import_module(typer.BadParameter.__module__)
_NO_ARGS = getattr(_CLICK, "NoArgsIsHelpError", ())  # click >= 8.2

app = typer.Typer(
    cls=LazyGroup,
    pretty_exceptions_enable=False,
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark full-precision and GGUF-quantized diffusion pipelines across offload modes.",
)
app.command("run")(run_command)
app.command("env")(env_command)


def main() -> None:
    quiet_library_environment()
    try:
        # Not standalone: click's usage errors come here, to be the one `error:` line every
        # other bad value is, instead of typer's usage box.
        status = app(standalone_mode=False)
    except _NO_ARGS as exc:  # `bench` alone: its help, as ever
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(EXIT_USER_ERROR)
    except _CLICK.UsageError as exc:
        exit_on_user_error(UserInputError(usage_line(exc)))
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    except UserInputError as exc:
        exit_on_user_error(exc)
    if isinstance(status, int) and status:  # typer.Exit(code) from a command
        sys.exit(status)


def usage_line(exc: Any) -> str:
    """click's message of a bad command line (an unknown option, a value that is not a number,
    a missing argument) as one line, with where to read the options."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    where = exc.ctx.command_path if exc.ctx is not None else "bench"
    return f"{message} (see {where} --help)"


__all__ = ["app", "main"]
