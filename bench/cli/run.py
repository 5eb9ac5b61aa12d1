"""`bench run`: sweep a config (or finish an interrupted run) and print the run's table.

The sweep itself is bench.runner.executor's; this module owns what only a terminal needs: the
signal handling that lets Ctrl-C leave a resumable folder, the command to type to finish it, and
the table.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bench.backends import variant_label
from bench.cli.errors import fail
from bench.errors import UserInputError
from bench.results import SCORES_SUMMARY, RunFolderWriteError, read_manifest
from bench.runner.executor import resume_run, run_config
from bench.runner.executor_choice import ExecutorChoice
from bench.runner.interrupt import RunInterrupted, StopRequests

DEFAULT_CONFIG = Path("configs/tiny.yaml")


def default_config() -> Path:
    """configs/tiny.yaml of the working directory, else the one beside the package (a checkout)."""
    if DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG
    beside_package = Path(__file__).resolve().parents[2] / DEFAULT_CONFIG
    return beside_package if beside_package.is_file() else DEFAULT_CONFIG


def print_run_table(run_dir: Path, console: Console) -> None:
    from bench.cell_summary import headline_memory, summarize_run  # deferred: loads pandas
    from bench.metrics.stats import method_label  # deferred: loads scipy

    frame = summarize_run(run_dir)
    psnr = _psnr_by_cell(run_dir)
    # A speed-up cell is its variant's with the speed-up named beside the quantization.
    quant = {
        c["cell_id"]: variant_label(c.get("variant_spec") or {})
        + (f" + {c['speedup']}" if c.get("speedup") else "")
        for c in read_manifest(run_dir)["cells"]
    }
    table = Table(title=f"run {run_dir.name}", title_justify="left")
    for column in ("variant", "quantization", "offload", "resolution", "status"):
        table.add_column(column)
    video = frame["num_frames"].notna().any()
    speed_column = "median s/video (frames)" if video else "median s/image"
    psnr_column = f"PSNR vs full, dB [{method_label()}]"
    for column in ("peak memory", speed_column, "load s", psnr_column):
        table.add_column(column, justify="right")
    for _, row in frame.iterrows():
        row = row.astype(object).where(row.notna(), None)
        gib, counter = headline_memory(row)
        memory = f"{gib:.2f} GiB ({counter})" if gib is not None else "-"
        if row["median_s"] is not None and row["n"]:
            frames = f", {int(row['num_frames'])} frames" if row["num_frames"] else ""
            speed = f"{row['median_s']:.3f} (n={row['n']}{frames})"
        else:
            speed = "-"
        status = row["status"]
        if row["error_type"]:
            status += f": {row['error_type']}"
        load = f"{row['load_s']:.2f}" if row["load_s"] is not None else "-"
        table.add_row(
            row["variant"],
            quant.get(row["cell_id"], "-"),
            row["offload"],
            row["resolution"],
            status,
            memory,
            speed,
            load,
            psnr.get(row["cell_id"], "-"),
        )
    console.print(table)
    console.print(f"run folder: {run_dir}")


def _psnr_by_cell(run_dir: Path) -> dict[str, str]:
    """PSNR against full precision per cell from `bench score`'s summary, as table text."""

    path = run_dir / SCORES_SUMMARY
    if not path.is_file():
        return {}  # an unscored run: no need to import the metrics (seconds of torchmetrics)
    from bench.metrics.score_summary import figure  # deferred: loads torch, PIL

    rows = json.loads(path.read_text()).get("cells", [])
    return {
        row["cell_id"]: "-" if row.get("status") == "cell_failed" else figure(row)
        for row in rows
        if row.get("metric") == "psnr"
    }


def run_command(
    config: Annotated[
        Path | None, typer.Argument(help="YAML config (default: configs/tiny.yaml)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="folder that receives the run folder [default: results]")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="run only these variants (repeatable)")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="complete an interrupted run folder (CONFIG, if given, must be its own)"),
    ] = None,
    score: Annotated[bool, typer.Option(help="score the images when the sweep ends")] = True,
    executor: Annotated[
        str, typer.Option(help="local: one cell at a time here; ray: one Ray task per cell")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="an existing Ray cluster (default: a Ray instance on this machine)"),
    ] = None,
) -> None:
    """Sweep variants × offload modes; write results/<run-id>/ and print the table."""

    try:
        chosen = ExecutorChoice.parse(executor, ray_address)
    except UserInputError as exc:
        raise fail(str(exc)) from None
    console = Console(stderr=True)
    again = ResumeCommand(config, only, score, chosen.words())
    # Installed for the rest of the process: a second Ctrl-C while Python exits is handled too.
    stop = StopRequests(on_second=again.say_stopped_at_once).install()
    try:
        if resume is not None:
            if out is not None and out.resolve() != resume.resolve().parent:
                raise UserInputError(f"--out {out}: the run folder {resume} is not in it")
            run_dir = resume_run(
                resume, console=console, config_path=config, only=only, stop=stop, executor=chosen
            )
        else:
            config_path = config or default_config()
            run_dir = run_config(
                config_path,
                out or Path("results"),
                only=only,
                console=console,
                stop=stop,
                executor=chosen,
            )
    except RunInterrupted as exc:
        again.say_interrupted(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted before the run folder existed; nothing to resume", err=True)
        raise typer.Exit(130) from None
    except RunFolderWriteError as exc:
        hint = ""
        if exc.run_dir is not None:
            hint = f"; once it can be written, finish the run with: {again.command(exc.run_dir)}"
        raise fail(f"{exc}{hint}") from None
    except UserInputError as exc:
        stop.restore()
        raise fail(str(exc)) from None
    try:
        if score:
            _score(run_dir)
        stdout = Console()
        print_run_table(run_dir, stdout if stdout.is_terminal else Console(width=160))
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted after the sweep; the run folder is complete: {run_dir} "
            f"(score it with: {_program()} score {shlex.quote(str(run_dir))})",
            err=True,
        )
        raise typer.Exit(130) from None
    stop.restore()


def _program() -> str:
    """How the user started bench, for commands we tell them to type."""
    if Path(sys.argv[0]).name in ("bench", "bench.exe"):
        return shlex.quote(sys.argv[0])
    return "python -m bench"


class ResumeCommand:
    """The command that finishes an interrupted run: the same one, plus `--resume RUN_DIR`."""

    def __init__(
        self,
        config: Path | None,
        only: list[str] | None,
        score: bool,
        executor_words: list[str] | None = None,
    ) -> None:
        words = [_program(), "run"]
        if config is not None:
            words.append(shlex.quote(str(config)))
        for name in only or []:
            words += ["--only", shlex.quote(name)]
        if not score:
            words.append("--no-score")
        words += [shlex.quote(word) for word in executor_words or []]
        self.words = words

    def command(self, run_dir: Path) -> str:
        return " ".join([*self.words, "--resume", shlex.quote(str(run_dir))])

    def say_interrupted(self, exc: Any) -> None:
        if exc.run_dir is None:
            typer.echo("interrupted before the run folder existed; nothing to resume", err=True)
            return
        missing = "" if exc.missing is None else f", {exc.missing} images still to make"
        typer.echo(
            f"interrupted ({exc.run_dir}{missing}); finish the run with: "
            f"{self.command(exc.run_dir)}",
            err=True,
        )

    def say_stopped_at_once(self, stop: Any) -> None:
        """From the second signal's handler, just before the process leaves at once."""
        show_cursor = "\x1b[?25h" if sys.stderr.isatty() else ""
        where = (
            f"; finish the run with: {self.command(stop.run_dir)}"
            if stop.run_dir is not None
            else ""
        )
        sys.stderr.write(f"{show_cursor}\nstopped at once{where}\n")
        sys.stderr.flush()


def _score(run_dir: Path) -> None:
    from bench.scoring import score_run  # deferred: loads torch, PIL

    score_run(run_dir, progress=True)
