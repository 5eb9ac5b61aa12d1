"""report.html: one self-contained file (styles inline, pictures as base64 data URIs) that can be
mailed or attached to an issue and still show every plot and image."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from bench.reporting.artifacts import Picture
from bench.reporting.document import Report, SpeedupSection

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1.5em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #d0d0d0; padding: 0.3em 0.55em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#claims td { white-space: normal; } #claims td.verdict { white-space: nowrap; }
tr.bad td { background: #fff1f0; } tr.partial td { background: #fffbe6; }
.scroll { overflow-x: auto; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.9em;
        margin: 0.6em 0; }
.reason { color: #555; font-style: italic; }
figure { margin: 1em 0 2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; max-width: 1000px; }
.verdict { font-weight: 600; white-space: nowrap; }
.v-supported { color: #1a7f37; } .v-not-supported { color: #b42318; }
.v-mixed { color: #9a6700; } .v-not-measured { color: #666; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
code { font-size: 0.9em; }
nav { margin: 1em 0; } nav a { color: #0b57d0; text-decoration: none; }
"""

SECTIONS = (
    ("results", "Results"),
    ("plots", "Plots"),
    ("images", "Images"),
    ("claims-checked", "Claims checked"),
    ("published", "Published figures"),
)
SPEEDUPS = ("speedups", "Speed-ups")
NUMERIC_HINTS = (
    "(GiB)",
    "(s)",
    "(J)",
    "bits/weight",
    "n images",
    "s/image",
    "n videos",
    "s/video",
    "s/frame",
    "frames",
)


def _em(text: str) -> str:
    """The one piece of Markdown emphasis the report's texts use: *published*."""
    return text.replace("*published*", "<em>published</em>")


def _data_uri(path: Path) -> str:
    kind = "webp" if path.suffix == ".webp" else "png"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def html_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], row_classes: Sequence[str] = ()
) -> str:
    numeric = [any(x in h for x in NUMERIC_HINTS) for h in header]
    out = ["<div class='scroll'><table>", "<thead><tr>"]
    out += [f"<th>{_em(escape(str(h)))}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cls = f" class='{row_classes[i]}'" if i < len(row_classes) and row_classes[i] else ""
        out.append(f"<tr{cls}>")
        out += [
            f"<td{' class=num' if numeric[j] else ''}>{escape(str(v))}</td>"
            for j, v in enumerate(row)
        ]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _figure(picture: Picture, out_dir: Path) -> str:
    title = f"<h3>{escape(picture.title)}</h3>"
    path = picture.path(out_dir)
    if path is None:
        return f"{title}<p class='reason'>{escape(picture.reason or '')}</p>"
    caption = f"<figcaption>{escape(picture.caption)}</figcaption>" if picture.caption else ""
    return (
        f"{title}<figure><img src='{_data_uri(path)}' alt='{escape(picture.title)}'>"
        f"{caption}</figure>"
    )


def _row_class(status: str) -> str:
    if status.startswith("ok"):
        return ""
    return "partial" if status.startswith("partial") else "bad"


def _speedups(section: SpeedupSection, out_dir: Path) -> list[str]:
    body = [f"<h2 id='{SPEEDUPS[0]}'>{SPEEDUPS[1]}</h2>"]
    for table in section.tables:
        body.append(f"<h3>{escape(table.variant)}</h3>")
        classes = [_row_class(status) for status in table.statuses]
        body.append(html_table(table.header, table.rows, classes))
    body.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in section.notes) + "</ul>")
    body += [_figure(p, out_dir) for p in section.plots]
    return body


def render_html(report: Report, out_dir: Path) -> str:
    """The whole page; pictures are read from `out_dir` and inlined."""
    body = [f"<h1>{escape(report.title)}</h1>", "<dl class='facts'>"]
    body += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in report.facts]
    body.append("</dl>")
    body += [f"<div class='note'>{escape(w)}</div>" for w in report.warnings]
    sections = SECTIONS if report.speedups is None else (SECTIONS[0], SPEEDUPS, *SECTIONS[1:])
    body.append(
        "<nav>" + " · ".join(f"<a href='#{key}'>{name}</a>" for key, name in sections) + "</nav>"
    )
    body.append("<h2 id='results'>Results</h2>")
    table = report.table
    classes = [_row_class(str(s)) for s in table["status"]] if "status" in table else []
    body.append(
        "<div id='results-table'>"
        + html_table(list(table.columns), table.astype(str).values.tolist(), classes)
        + "</div>"
    )
    body.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.table_notes) + "</ul>")
    if report.failures:
        body.append("<h3>Cells that did not run fully</h3><ul>")
        body += [f"<li><code>{escape(line)}</code></li>" for line in report.failures]
        body.append("</ul>")
    if report.speedups is not None:
        body += _speedups(report.speedups, out_dir)
    body.append("<h2 id='plots'>Plots</h2>")
    body += [_figure(p, out_dir) for p in report.plots]
    body.append("<h2 id='images'>Images</h2>")
    body += [_figure(p, out_dir) for p in report.grids] or [
        "<p class='reason'>no images in this run</p>"
    ]
    body.append("<h2 id='claims-checked'>Claims checked</h2>")
    body.append("<p>Claims of the blog post (<em>published</em>), and what this run measured.</p>")
    rows = []
    for claim in report.claims:
        css = "v-" + claim.verdict.replace(" ", "-")
        rows.append(
            f"<tr><td>{escape(claim.claim)}</td><td>{_em(escape(claim.measured))}</td>"
            f"<td class='verdict {css}'>{escape(claim.verdict)}</td></tr>"
        )
    body.append(
        "<div class='scroll'><table id='claims'><thead><tr><th>claim (<em>published</em>)</th>"
        "<th>measured in this run</th><th>verdict</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )
    body.append("<h2 id='published'>Published figures</h2>")
    for section in report.published:
        body.append(f"<h3>{escape(section.title)}</h3>")
        if section.rows:
            body.append(html_table(section.header, section.rows))
        body.append(f"<p>{escape(section.note)}</p>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(report.title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
