"""`bench env`: what a run would record about this machine."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.environment import collect_environment


def env_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show what a run would record about this machine (versions, CPU, GPU, driver)."""

    info = collect_environment()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    console = Console()
    table = Table(show_header=False, title="environment", title_justify="left")
    table.add_column("key")
    table.add_column("value")
    table.add_row("python", info["python"])
    for name, version in info["packages"].items():
        table.add_row(name, version or "not installed")
    table.add_row("os", info["os"])
    table.add_row("cpu", f"{info['cpu']['model']} ({info['cpu']['logical_cores']} logical)")
    table.add_row("host memory", f"{info['host_memory_bytes'] / (1 << 30):.1f} GiB")
    table.add_row("torch cuda", str(info["cuda"]["torch_cuda"]))
    if not info["gpus"]:
        table.add_row("gpu", "none visible")
    for gpu in info["gpus"]:
        table.add_row(
            f"gpu {gpu['index']}",
            f"{gpu['name']}, {gpu['total_memory_bytes'] / (1 << 30):.1f} GiB, "
            f"cc {gpu['compute_capability']}, driver {gpu['driver']}",
        )
    console.print(table)
