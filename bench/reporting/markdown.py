"""report.md: the report as Markdown, pictures linked as files beside it (readable on GitHub and
in a terminal pager)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bench.reporting.artifacts import Picture
from bench.reporting.document import Report, SpeedupSection


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_table(frame: pd.DataFrame) -> str:
    return md_table(list(frame.columns), frame.astype(str).values.tolist())


def _picture(picture: Picture) -> str:
    if picture.filename is None:
        return f"### {picture.title}\n\n_{picture.reason}_\n"
    out = f"### {picture.title}\n\n![{picture.title}]({picture.filename})\n"
    if picture.caption:
        out += f"\n{picture.caption}\n"
    return out


def _speedups(section: SpeedupSection) -> list[str]:
    parts = ["## Speed-ups\n"]
    for table in section.tables:
        parts.append(f"### {table.variant}\n")
        parts.append(md_table(table.header, table.rows) + "\n")
    parts.append("\n".join(f"- {note}" for note in section.notes) + "\n")
    parts += [_picture(p) for p in section.plots]
    return parts


def render_markdown(report: Report) -> str:
    parts = [f"# {report.title}\n"]
    parts.append("\n".join(f"- **{label}**: {value}" for label, value in report.facts) + "\n")
    for warning in report.warnings:
        parts.append(f"> **Note:** {warning}\n")
    parts.append("## Results\n")
    parts.append(frame_table(report.table) + "\n")
    parts.append("\n".join(f"- {note}" for note in report.table_notes) + "\n")
    if report.failures:
        parts.append("### Cells that did not run fully\n")
        parts.append("\n".join(f"- `{line}`" for line in report.failures) + "\n")
    if report.speedups is not None:
        parts += _speedups(report.speedups)
    parts.append("## Plots\n")
    parts += [_picture(p) for p in report.plots]
    parts.append("## Images\n")
    parts += [_picture(p) for p in report.grids] or ["_no images in this run_\n"]
    parts.append("## Claims checked\n")
    parts.append(
        "Claims of the blog post (*published*), and what this run measured for each.\n\n"
        + md_table(
            ["claim (*published*)", "measured in this run", "verdict"],
            [[c.claim, c.measured, f"**{c.verdict}**"] for c in report.claims],
        )
        + "\n"
    )
    parts.append("## Published figures\n")
    for section in report.published:
        parts.append(f"### {section.title}\n")
        if section.rows:
            parts.append(md_table(section.header, section.rows) + "\n")
        parts.append(f"{section.note}\n")
    return "\n".join(parts)
